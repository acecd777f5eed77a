"""One-shot FL's claims, read from the one-shot study's gap table (``zofo.analysis.tables.gap_table``):
one round matches multi-round FedAvg on a large model, and the gap shrinks as the model grows."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from zofo.analysis.claims.evidence import ONESHOT, Evidence, alpha_text, honest, need, reference_alpha, sci
from zofo.analysis.claims.rules import BILLION, Finding, Group, Missing, at_most, direction, signed
from zofo.analysis.load import PARAMETERS
from zofo.analysis.stats import Estimate


@dataclass(frozen=True)
class _Gap:
    """One model size of the gap table: FedAvg's and one-shot's groups and the gap between them."""

    size: float
    model: str
    fedavg: Group
    oneshot: Group
    gap: Estimate

    def __str__(self) -> str:
        return (
            f"{self.model} ({sci(self.size)} parameters): FedAvg {self.fedavg}, one-shot {self.oneshot}, "
            f"gap {signed(self.gap.value)}"
        )


def _side(row: pd.Series, method: str, name: str) -> Group:
    n = int(row[f"{method}_n"])
    mean = float(row[f"{method}_mean"])
    if n == 0 or not math.isfinite(mean):
        raise Missing(f"every {method} run in the {ONESHOT} at {name} diverged or failed (0 ok seeds)")
    sd = float(row[f"{method}_sd"]) if pd.notna(row[f"{method}_sd"]) else math.nan
    return Group(mean, sd, n)


def _gaps(ev: Evidence) -> tuple[list[_Gap], float]:
    """The gap at each model size, ascending, and the alpha used."""
    gaps = honest(need(ev.oneshot, ONESHOT))
    alpha = math.nan
    if "alpha" in gaps.columns:
        alphas = sorted({float(a) for a in gaps["alpha"]})
        try:
            ref = reference_alpha(ev.main)
        except Missing:
            ref = math.nan
        # The main study's alpha where the size study ran it, so the two speak of one setting.
        alpha = ref if ref in alphas else alphas[0] if alphas else math.nan
        gaps = gaps[gaps["alpha"] == alpha]
    sizes = sorted({float(s) for s in gaps[PARAMETERS].dropna()})
    if not sizes:
        raise Missing(f"the {ONESHOT} has no model size run by both FedAvg and one-shot")
    out = []
    for size in sizes:
        rows = gaps[gaps[PARAMETERS].astype(float) == size]
        if len(rows) > 1:
            # Averaging two cells would mix settings, so an ambiguous size is reported, not resolved.
            raise Missing(
                f"the {ONESHOT} has {len(rows)} cells at {sci(size)} parameters; the claim needs one"
            )
        row = rows.iloc[0]
        model = str(row["model"])
        fedavg, oneshot = _side(row, "fedavg", model), _side(row, "oneshot", model)
        gap = Estimate(float(row["gap"]), float(row["gap_se"]))
        out.append(_Gap(size, model, fedavg, oneshot, gap))
    return out, alpha


def oneshot_matches(ev: Evidence) -> Finding:
    gaps, alpha = _gaps(ev)
    largest = gaps[-1]
    at = f" at {alpha_text(alpha)}" if not math.isnan(alpha) else ""
    evidence = f"Largest model{at}: {largest}."
    verdict, reason = at_most(largest.gap, 0.0, "FedAvg - one-shot")
    if largest.size < BILLION:
        reason += f"; the paper's models have 1e9 to 1.3e10 parameters, this one {sci(largest.size)}"
    return Finding(evidence, verdict, reason)


def oneshot_shrinks(ev: Evidence) -> Finding:
    gaps, alpha = _gaps(ev)
    if len(gaps) < 2:
        raise Missing(f"the {ONESHOT} has only one model size run by both FedAvg and one-shot")
    small, large = gaps[0], gaps[-1]
    at = f" at {alpha_text(alpha)}" if not math.isnan(alpha) else ""
    evidence = f"Gap FedAvg - one-shot{at}: smallest {small}; largest {large}."
    return Finding(evidence, *direction(small.gap - large.gap, "smallest model's gap - largest model's gap"))
