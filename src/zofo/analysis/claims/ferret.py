"""Ferret's claims: a millionth of FedAvg's uplink, rounds and compute to the target, accuracy
comparable to FedAvg."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from zofo.analysis.claims.evidence import (
    COST,
    NAMES,
    TARGET,
    Evidence,
    bits,
    comm_value,
    need,
    sci,
    select,
    versus,
)
from zofo.analysis.claims.rules import (
    BILLION,
    DOES_NOT_HOLD,
    FERRET_COMM_FLOOR,
    FERRET_COMPUTE_RATIO,
    HOLDS,
    INCONCLUSIVE,
    Finding,
    at_least,
)


def ferret_comm(ev: Evidence) -> Finding:
    fedavg_up = comm_value(ev.comm, "fedavg", "bits_up_per_client_round")
    ferret_up = comm_value(ev.comm, "ferret", "bits_up_per_client_round")
    # FedAvg broadcasts the d trainable weights as float32 and nothing else, so its downlink gives d.
    d = comm_value(ev.comm, "fedavg", "bits_down_per_client_round") / 32
    ratio = fedavg_up / ferret_up
    evidence = (
        f"Uplink per client and round: FedAvg {bits(fedavg_up)} bits, Ferret {bits(ferret_up)} bits; "
        f"FedAvg / Ferret = {sci(ratio)} at d = {sci(d)} trainable parameters."
    )
    if ratio >= FERRET_COMM_FLOOR:
        return Finding(
            evidence,
            HOLDS,
            f"the ratio {sci(ratio)} is of the claimed order 10^6 (log10 rounds to 6 or more)",
        )
    if d >= BILLION:
        return Finding(
            evidence,
            DOES_NOT_HOLD,
            f"the ratio {sci(ratio)} is below the order of 10^6 even at d = {sci(d)}",
        )
    return Finding(
        evidence,
        INCONCLUSIVE,
        f"the ratio {sci(ratio)} misses 10^6, but it grows in proportion to d (FedAvg sends 32 d bits, "
        f"Ferret about 33 K) and this model has d = {sci(d)}, against the paper's billion-parameter models",
    )


@dataclass(frozen=True)
class _Reach:
    """Rounds to the target as an interval: a run that never reached it needs more than any that did."""

    lo: float
    hi: float
    text: str


def _reach(to_target: pd.DataFrame, method: str) -> _Reach:
    row = select(to_target, method, TARGET)
    n_runs, n_reached = int(row["n_runs"]), int(row["n_reached"])
    rounds = float(row["rounds_to_target_mean"])
    counts = f"{n_reached} of {n_runs} runs"
    if n_reached == 0 or not math.isfinite(rounds):
        return _Reach(math.inf, math.inf, f"{NAMES[method]} never ({counts})")
    if n_reached < n_runs:
        # The mean is over the runs that reached it; the others would need more: a lower bound only.
        return _Reach(
            rounds, math.inf, f"{NAMES[method]} {rounds:g} over the runs that reached it ({counts})"
        )
    return _Reach(rounds, rounds, f"{NAMES[method]} {rounds:g} ({counts})")


def _surely_le(a: _Reach, b: _Reach, slack: float) -> bool | None:
    """Is a <= b + slack for every value in the intervals (True), for none (False), or undecided (None)?"""
    if math.isfinite(a.hi) and a.hi <= b.lo + slack:
        return True
    if math.isfinite(b.hi) and a.lo > b.hi + slack:
        return False
    return None


def _surely_lt(a: _Reach, b: _Reach) -> bool | None:
    if math.isfinite(a.hi) and a.hi < b.lo:
        return True
    if math.isfinite(b.hi) and a.lo >= b.hi:
        return False
    return None


def _target_text(to_target: pd.DataFrame) -> str:
    if "target" not in to_target.columns:
        return "the target"
    targets = sorted({str(t) if not isinstance(t, float) else f"{t:g}" for t in to_target["target"]})
    return f"the target {' / '.join(targets)}"


def ferret_rounds(ev: Evidence) -> Finding:
    tt = need(ev.to_target, TARGET)
    fe, fa, fk = (_reach(tt, m) for m in ("ferret", "fedavg", "fedkseed"))
    evidence = f"Mean rounds to reach {_target_text(tt)}: {fe.text}; {fa.text}; {fk.text}."
    near_fedavg, below_fedkseed = _surely_le(fe, fa, 1.0), _surely_lt(fe, fk)
    if near_fedavg and below_fedkseed:
        return Finding(
            evidence, HOLDS, "Ferret needs at most one round more than FedAvg and fewer than FedKSeed"
        )
    if near_fedavg is False:
        return Finding(evidence, DOES_NOT_HOLD, "Ferret needs more than one round more than FedAvg")
    if below_fedkseed is False:
        return Finding(evidence, DOES_NOT_HOLD, "Ferret needs no fewer rounds than FedKSeed")
    return Finding(
        evidence,
        INCONCLUSIVE,
        "a method reached the target in only some runs or not at all, which leaves the order undecided",
    )


def ferret_compute(ev: Evidence) -> Finding:
    tt = need(ev.to_target, TARGET)
    cost = need(ev.cost, COST)
    fe, fk = _reach(tt, "ferret"), _reach(tt, "fedkseed")
    c_fe = float(select(cost, "ferret", COST)["client_seconds_per_round_mean"])
    c_fk = float(select(cost, "fedkseed", COST)["client_seconds_per_round_mean"])
    head = (
        f"Client seconds per round: Ferret {c_fe:.3g}, FedKSeed {c_fk:.3g}; rounds to {_target_text(tt)}: "
        f"{fe.text}; {fk.text}"
    )
    shared = "timings come from a machine shared with other jobs"
    if math.isinf(fe.lo):
        # Refuted only against a FedKSeed that reached it in every run; otherwise nothing to compare.
        verdict = DOES_NOT_HOLD if math.isfinite(fk.hi) else INCONCLUSIVE
        return Finding(f"{head}.", verdict, f"Ferret never reached the target; {fk.text}")
    if not (math.isfinite(fk.hi) and fe.lo == fe.hi and fk.lo == fk.hi):
        # A never-reached FedKSeed needs more rounds than it ran, but how many more is unknown, so no
        # factor can be claimed from it.
        return Finding(
            f"{head}.",
            INCONCLUSIVE,
            "not every run reached the target, so the compute to reach it is unknown",
        )
    ratio = (c_fk * fk.lo) / (c_fe * fe.lo)
    evidence = (
        f"{head}. Client compute to the target: FedKSeed {c_fk * fk.lo:.3g} s, Ferret {c_fe * fe.lo:.3g} s; "
        f"ratio {ratio:.3g}."
    )
    if ratio >= FERRET_COMPUTE_RATIO:
        return Finding(
            evidence, HOLDS, f"FedKSeed / Ferret = {ratio:.3g} >= {FERRET_COMPUTE_RATIO:g}; {shared}"
        )
    if ratio < 1:
        return Finding(
            evidence, DOES_NOT_HOLD, f"Ferret needs more client compute than FedKSeed ({ratio:.3g}); {shared}"
        )
    return Finding(
        evidence,
        INCONCLUSIVE,
        f"Ferret needs less client compute, but {ratio:.3g}x rather than {FERRET_COMPUTE_RATIO:g}x; the "
        f"factor depends on model size, local steps and K, and {shared}",
    )


def ferret_accuracy(ev: Evidence) -> Finding:
    d, evidence = versus(ev.main, "ferret", "fedavg")
    return Finding(evidence, *at_least(d, 0.0, "Ferret - FedAvg"))
