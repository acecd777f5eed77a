"""FeedSign's claims: one bit each way, 1/64 of ZO-FedSGD's uplink, non-iid accuracy, the gap to
first-order FedAvg, Byzantine voters, heterogeneity."""

from __future__ import annotations

import math

import pandas as pd

from zofo.analysis.claims.evidence import (
    BYZ,
    HETERO,
    MAIN,
    Evidence,
    alpha_text,
    bits,
    bits_list,
    comm_value,
    comm_values,
    group,
    honest,
    learns,
    need,
    reference_alpha,
    select,
    versus,
)
from zofo.analysis.claims.rules import (
    DOES_NOT_HOLD,
    FEEDSIGN_FO_GAP,
    HOLDS,
    INCONCLUSIVE,
    OWN_RULES,
    Finding,
    Missing,
    at_least,
    at_most,
    direction,
)


def feedsign_one_bit(ev: Evidence) -> Finding:
    ups = comm_values(ev.comm, "feedsign", "bits_up_per_client_round")
    downs = comm_values(ev.comm, "feedsign", "bits_down_per_client_round")
    evidence = (
        f"Counted on the wire: FeedSign sends {bits_list(ups)} bit up and {bits_list(downs)} bit down "
        "per client and round (one round is one step)."
    )
    if ups == [1.0] and downs == [1.0]:
        return Finding(evidence, HOLDS, "exact count: one bit each way per client and step")
    return Finding(evidence, DOES_NOT_HOLD, "exact count: the payload is not one bit each way")


def feedsign_uplink_ratio(ev: Evidence) -> Finding:
    fs = comm_value(ev.comm, "feedsign", "bits_up_per_client_round")
    zo = comm_value(ev.comm, "zo-fedsgd", "bits_up_per_client_round")
    ratio = f"1/{zo / fs:g}" if fs > 0 else "0"
    evidence = (
        f"Uplink per client and round: FeedSign {bits(fs)} bit, ZO-FedSGD {bits(zo)} bits; ratio {ratio}."
    )
    if fs * 64 == zo:
        return Finding(evidence, HOLDS, "exact count: the ratio is 1/64")
    return Finding(evidence, DOES_NOT_HOLD, f"exact count: the ratio is {ratio}, not 1/64")


def feedsign_non_iid(ev: Evidence) -> Finding:
    if math.isinf(reference_alpha(ev.main)):
        raise Missing(f"the {MAIN} runs only iid partitions; the claim is about Dirichlet (non-iid) clients")
    d, evidence = versus(ev.main, "feedsign", "zo-fedsgd")
    return Finding(evidence, *direction(d, "FeedSign - ZO-FedSGD"))


def feedsign_vs_fo(ev: Evidence) -> Finding:
    d, evidence = versus(ev.main, "feedsign", "fedavg")
    return Finding(evidence, *at_least(d, -FEEDSIGN_FO_GAP, "FeedSign - FedAvg"))


def feedsign_byzantine(ev: Evidence) -> Finding:
    byz = need(ev.byzantine, BYZ)
    agg = byz["aggregator"].fillna("mean") if "aggregator" in byz.columns else pd.Series("mean", byz.index)
    # FeedSign under its own vote, ZO-FedSGD under its own (plain mean) rule: the paper's comparison.
    fs_rows = byz[(byz["method"] == "feedsign") & agg.isin(OWN_RULES)]
    zo_rows = byz[(byz["method"] == "zo-fedsgd") & (agg == "mean")]
    shared = {float(f) for f in fs_rows["byz_frac"]} & {float(f) for f in zo_rows["byz_frac"]}
    fracs = sorted(f for f in shared if 0 < f < 0.5)
    if not fracs:
        raise Missing(
            f"the {BYZ} has no Byzantine fraction between 0 and 0.5 run by both FeedSign (its vote) and "
            "ZO-FedSGD (mean)"
        )
    f = fracs[-1]  # the strongest attack that is still a minority
    fs0, fsf = (group(fs_rows, "feedsign", BYZ, byz_frac=x) for x in (0.0, f))
    zo0, zof = (group(zo_rows, "zo-fedsgd", BYZ, byz_frac=x) for x in (0.0, f))
    drop_fs, drop_zo = fs0.est - fsf.est, zo0.est - zof.est
    d = drop_zo - drop_fs
    attacks = ""
    if "attack" in byz.columns:
        fs_attack = select(fs_rows, "feedsign", BYZ, byz_frac=f)["attack"]
        zo_attack = select(zo_rows, "zo-fedsgd", BYZ, byz_frac=f)["attack"]
        attacks = f" (attacks: FeedSign {fs_attack}, ZO-FedSGD {zo_attack})"
    evidence = (
        f"Byzantine fraction 0 -> {f:g}{attacks}: FeedSign (vote) {fs0} -> {fsf}, drop "
        f"{drop_fs.value:.3f}; ZO-FedSGD (mean) {zo0} -> {zof}, drop {drop_zo.value:.3f}."
    )
    learning, gain_text = learns(fs_rows, "feedsign", BYZ, byz_frac=0.0)
    if not learning:
        return Finding(
            evidence,
            INCONCLUSIVE,
            f"{gain_text} without attackers: it does not learn at this "
            "budget, so a small drop under attack says little about robustness",
        )
    return Finding(evidence, *direction(d, "ZO-FedSGD's drop - FeedSign's drop"))


def feedsign_heterogeneity(ev: Evidence) -> Finding:
    het = honest(need(ev.heterogeneity, HETERO))
    alphas = sorted(
        {float(a) for a in het.loc[het["method"] == "feedsign", "alpha"]}
        & {float(a) for a in het.loc[het["method"] == "fedavg", "alpha"]}
    )
    if len(alphas) < 2:
        raise Missing(f"the {HETERO} has fewer than two alphas run by both FeedSign and FedAvg")
    lo, hi = alphas[0], alphas[-1]
    fs_hi, fs_lo = (group(het, "feedsign", HETERO, alpha=a) for a in (hi, lo))
    fa_hi, fa_lo = (group(het, "fedavg", HETERO, alpha=a) for a in (hi, lo))
    drop_fs, drop_fa = fs_hi.est - fs_lo.est, fa_hi.est - fa_lo.est
    evidence = (
        f"From {alpha_text(hi)} to {alpha_text(lo)}: FeedSign {fs_hi} -> {fs_lo}, drop "
        f"{drop_fs.value:.3f}; FedAvg {fa_hi} -> {fa_lo}, drop {drop_fa.value:.3f}."
    )
    learning, gain_text = learns(het, "feedsign", HETERO, alpha=hi)
    if not learning:
        # A method that does not move from its start loses nothing to heterogeneity, trivially.
        return Finding(
            evidence,
            INCONCLUSIVE,
            f"{gain_text} at {alpha_text(hi)}: it does not learn at this "
            "budget, so there is nothing for heterogeneity to take",
        )
    return Finding(evidence, *at_most(drop_fs - drop_fa, 0.0, "FeedSign's drop - FedAvg's drop"))
