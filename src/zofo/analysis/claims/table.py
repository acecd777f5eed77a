"""The claims table: every claim in a fixed order, each judged from the evidence, written as CSV and
Markdown."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from zofo.analysis.claims.evidence import Evidence
from zofo.analysis.claims.fedkseed import fedkseed_uplink, fedkseed_vs_fedit, pro_vs_fedkseed
from zofo.analysis.claims.feedsign import (
    feedsign_byzantine,
    feedsign_heterogeneity,
    feedsign_non_iid,
    feedsign_one_bit,
    feedsign_uplink_ratio,
    feedsign_vs_fo,
)
from zofo.analysis.claims.ferret import ferret_accuracy, ferret_comm, ferret_compute, ferret_rounds
from zofo.analysis.claims.oneshot import oneshot_matches, oneshot_shrinks
from zofo.analysis.claims.rules import COLUMNS, INCONCLUSIVE, VERDICTS, Claim, Finding, Missing
from zofo.analysis.tables.format import to_markdown
from zofo.engine.record import atomic_write_text

CLAIMS: tuple[Claim, ...] = (
    Claim(
        "feedsign-one-bit",
        "FeedSign",
        "Each client uploads a single sign bit per step and the server broadcasts a single bit back.",
        feedsign_one_bit,
    ),
    Claim(
        "feedsign-uplink-1/64",
        "FeedSign",
        "FeedSign's uplink is 1/64 of ZO-FedSGD's (one bit against a 32-bit seed and a 32-bit scalar).",
        feedsign_uplink_ratio,
    ),
    Claim(
        "feedsign-non-iid",
        "FeedSign",
        "On label-skewed clients (Dirichlet 0.5) FeedSign ends more accurate than ZO-FedSGD "
        "(reported: 3.6 points on SST-2, 4.0 on RTE).",
        feedsign_non_iid,
    ),
    Claim(
        "feedsign-vs-fo",
        "FeedSign",
        "FeedSign gives up about 6 points against first-order full fine-tuning, not more.",
        feedsign_vs_fo,
    ),
    Claim(
        "feedsign-byzantine",
        "FeedSign",
        "A minority of Byzantine clients that reverse their vote hurts FeedSign less than attackers hurt "
        "ZO-FedSGD's mean.",
        feedsign_byzantine,
    ),
    Claim(
        "feedsign-heterogeneity",
        "FeedSign",
        "More heterogeneous client data costs FeedSign no more accuracy than it costs first-order FedAvg.",
        feedsign_heterogeneity,
    ),
    Claim(
        "fedkseed-uplink-18kb",
        "FedKSeed",
        "A client uploads less than 18 KB per round.",
        fedkseed_uplink,
    ),
    Claim(
        "fedkseed-vs-fedit",
        "FedKSeed",
        "FedKSeed is more accurate than FedIT (federated LoRA).",
        fedkseed_vs_fedit,
    ),
    Claim(
        "pro-vs-fedkseed",
        "FedKSeed-Pro",
        "Sampling seeds by their importance makes FedKSeed-Pro more accurate than FedKSeed.",
        pro_vs_fedkseed,
    ),
    Claim(
        "ferret-comm-1e6",
        "Ferret",
        "Ferret uploads about a millionth of FedAvg's bits.",
        ferret_comm,
    ),
    Claim(
        "ferret-rounds",
        "Ferret",
        "Ferret reaches its accuracy in about as few rounds as FedAvg and in far fewer than FedKSeed.",
        ferret_rounds,
    ),
    Claim(
        "ferret-compute-6x",
        "Ferret",
        "Ferret needs about 6 times less client compute than FedKSeed to reach the same accuracy.",
        ferret_compute,
    ),
    Claim(
        "ferret-vs-fedavg",
        "Ferret",
        "Ferret's accuracy is comparable to first-order FedAvg's.",
        ferret_accuracy,
    ),
    Claim(
        "oneshot-matches",
        "One-shot FL",
        "For a large pre-trained model one communication round matches multi-round FedAvg at equal local "
        "compute.",
        oneshot_matches,
    ),
    Claim(
        "oneshot-gap-shrinks",
        "One-shot FL",
        "The gap between multi-round FedAvg and one round shrinks as the model grows.",
        oneshot_shrinks,
    ),
)


def assess(claim: Claim, ev: Evidence) -> Finding:
    """One claim's finding; evidence this config lacks makes it inconclusive, naming what is missing."""
    try:
        found = claim.judge(ev)
    except Missing as missing:
        found = Finding("not measured in this config", INCONCLUSIVE, f"missing evidence: {missing}")
    if found.verdict not in VERDICTS:
        raise AssertionError(f"{claim.key}: verdict {found.verdict!r} is not one of {VERDICTS}")
    return found


def claims_table(ev: Evidence) -> pd.DataFrame:
    """One row per claim of ``CLAIMS``, in that order: paper, claim, evidence, verdict, reason."""
    records = []
    for claim in CLAIMS:
        found = assess(claim, ev)
        records.append(
            {
                "paper": claim.paper,
                "claim": claim.text,
                "evidence": found.evidence,
                "verdict": found.verdict,
                "reason": found.reason,
            }
        )
    return pd.DataFrame(records, columns=list(COLUMNS))


def write_claims(table: pd.DataFrame, csv_path: str | Path, md_path: str | Path) -> None:
    """The claims table as CSV and as Markdown, each replaced atomically (never half-written)."""
    atomic_write_text(csv_path, table.to_csv(index=False))
    atomic_write_text(md_path, to_markdown(table))
