"""FedKSeed's and FedKSeed-Pro's claims: the uplink bound, FedKSeed against FedIT, Pro against FedKSeed."""

from __future__ import annotations

from zofo.analysis.claims.evidence import (
    Evidence,
    bits_list,
    comm_values,
    versus,
)
from zofo.analysis.claims.rules import (
    DOES_NOT_HOLD,
    FEDKSEED_UPLINK_KIB,
    HOLDS,
    Finding,
    direction,
)


def fedkseed_uplink(ev: Evidence) -> Finding:
    ups = comm_values(ev.comm, "fedkseed", "bits_up_per_client_round")
    kib = [b / 8 / 1024 for b in ups]
    evidence = (
        f"FedKSeed sends {bits_list(ups)} bits = {' / '.join(f'{k:.1f}' for k in kib)} KiB up per client "
        "and round, counted on the wire."
    )
    if max(kib) < FEDKSEED_UPLINK_KIB:
        return Finding(evidence, HOLDS, f"exact count: under {FEDKSEED_UPLINK_KIB:g} KiB")
    return Finding(evidence, DOES_NOT_HOLD, f"exact count: not under {FEDKSEED_UPLINK_KIB:g} KiB")


def fedkseed_vs_fedit(ev: Evidence) -> Finding:
    d, evidence = versus(ev.main, "fedkseed", "fedavg-lora")
    return Finding(evidence, *direction(d, "FedKSeed - FedIT"))


def pro_vs_fedkseed(ev: Evidence) -> Finding:
    d, evidence = versus(ev.main, "fedkseed-pro", "fedkseed")
    return Finding(evidence, *direction(d, "FedKSeed-Pro - FedKSeed"))
