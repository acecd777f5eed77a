"""The decision rules of the claims table: verdicts, findings, and how a difference with its standard
error becomes a verdict (``direction``, ``at_least``, ``at_most``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from zofo.analysis.stats import Estimate
from zofo.analysis.tables.format import pm

if TYPE_CHECKING:
    from zofo.analysis.claims.evidence import Evidence

HOLDS = "holds"
DOES_NOT_HOLD = "does not hold"
INCONCLUSIVE = "inconclusive at this scale"
VERDICTS: tuple[str, str, str] = (HOLDS, DOES_NOT_HOLD, INCONCLUSIVE)
COLUMNS: tuple[str, ...] = ("paper", "claim", "evidence", "verdict", "reason")

# How many standard errors a difference must exceed before it counts as a difference.
Z = 2.0
# FeedSign's reported average shortfall against first-order full fine-tuning, as a metric fraction.
FEEDSIGN_FO_GAP = 0.06
# The alpha of FeedSign's non-iid experiments; the main study's default.
NON_IID_ALPHA = 0.5
# FedKSeed's uplink bound per client and round, in KiB.
FEDKSEED_UPLINK_KIB = 18.0
# Ferret's communication claim and the smallest ratio of the same order of magnitude: the paper's own
# "10^6" rounds its counts (7.7e5 on LLaMA-3B), so a log10 that rounds to 6 or
# more is the claim.
FERRET_COMM_RATIO = 1e6
FERRET_COMM_FLOOR = 10**5.5
# Ferret's compute claim (client seconds to reach the target, FedKSeed / Ferret).
FERRET_COMPUTE_RATIO = 6.0
# Trainable parameters from which a model is at the papers' scale: below it a scale-bound claim that
# misses is not refuted, only out of reach.
BILLION = 1e9
# Aggregators that are a method's own rule: "mean" in the config, FeedSign's vote shows as "majority".
OWN_RULES: frozenset[str] = frozenset({"mean", "majority"})


@dataclass(frozen=True)
class Finding:
    evidence: str
    verdict: str
    reason: str


@dataclass(frozen=True)
class Claim:
    key: str
    paper: str
    text: str
    judge: Callable[[Evidence], Finding]


class Missing(Exception):
    """The evidence a claim needs is not in this config (or not unambiguous); the message says what."""


@dataclass(frozen=True)
class Group:
    """One ``final_metric_table`` row reduced to what the statistics use."""

    mean: float
    sd: float
    n: int

    @property
    def est(self) -> Estimate:
        return Estimate.of_group(self.mean, self.sd, self.n)

    def __str__(self) -> str:
        return f"{pm(self.mean, self.sd)} (n={self.n})"


def signed(x: float) -> str:
    return f"{x:+.3g}"


def unknown_se(label: str, d: Estimate) -> tuple[str, str]:
    return INCONCLUSIVE, (
        f"{label} = {signed(d.value)}, but a group has fewer than 2 seeds, so the standard error is unknown"
    )


def direction(d: Estimate, label: str) -> tuple[str, str]:
    """Direction claim: ``d`` is oriented so that the claim says d > 0."""
    if not math.isfinite(d.se):
        return unknown_se(label, d)
    bound = Z * d.se
    if d.value > bound:
        return HOLDS, f"{label} = {signed(d.value)} is beyond 2 standard errors over seeds ({bound:.3g})"
    if d.value < -bound:
        return DOES_NOT_HOLD, (
            f"{label} = {signed(d.value)} is beyond 2 standard errors over seeds ({bound:.3g}) "
            "against the claimed direction"
        )
    return INCONCLUSIVE, f"{label} = {signed(d.value)} is within 2 standard errors over seeds ({bound:.3g})"


def at_least(d: Estimate, floor: float, label: str) -> tuple[str, str]:
    """'At least as good' claim: holds unless d is below ``floor`` by more than 2 se."""
    if not math.isfinite(d.se):
        return unknown_se(label, d)
    bound = Z * d.se
    if d.value >= floor - bound:
        return HOLDS, (
            f"{label} = {signed(d.value)} is not below {floor:g} by more than 2 standard errors over seeds "
            f"({bound:.3g})"
        )
    return DOES_NOT_HOLD, (
        f"{label} = {signed(d.value)} is below {floor:g} by more than 2 standard errors over seeds "
        f"({bound:.3g})"
    )


def at_most(d: Estimate, ceiling: float, label: str) -> tuple[str, str]:
    """'No more than' claim: holds unless d exceeds ``ceiling`` by more than 2 se."""
    if not math.isfinite(d.se):
        return unknown_se(label, d)
    bound = Z * d.se
    if d.value <= ceiling + bound:
        return HOLDS, (
            f"{label} = {signed(d.value)} does not exceed {ceiling:g} by more than 2 standard errors over "
            f"seeds ({bound:.3g})"
        )
    return DOES_NOT_HOLD, (
        f"{label} = {signed(d.value)} exceeds {ceiling:g} by more than 2 standard errors over seeds "
        f"({bound:.3g})"
    )
