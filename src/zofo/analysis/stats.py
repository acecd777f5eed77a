"""Every statistic the tables report, defined once; figures draw the tables and claims read them.

Over the seeds of one group: ``mean``, ``sd`` (ddof=1) and ``se`` (sd / sqrt(n)), and ``summarize``
for all of them per group of a frame. Comparing two groups: ``Estimate`` (a value with its standard
error), ``difference`` and ``oneshot_gap``. Reaching a target: ``half_gain_target`` and
``first_reach``; the pretrained level is ``pretrained_level``.

Missing values (a run without a round-0 row has no start metric) are skipped by the means and sds,
as pandas does, but still count towards ``n`` where a caller passes the number of runs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandas as pd


def _series(values: Iterable[float]) -> pd.Series:
    return values.astype(float) if isinstance(values, pd.Series) else pd.Series(list(values), dtype=float)


def mean(values: Iterable[float]) -> float:
    """The mean over seeds; NaN with no value."""
    s = _series(values)
    return float(s.mean()) if len(s) else math.nan


def sd(values: Iterable[float]) -> float:
    """The sample standard deviation over seeds (ddof=1); NaN with fewer than two values."""
    s = _series(values)
    return float(s.std(ddof=1)) if len(s) > 1 else math.nan


def se(sd_value: float, n: int) -> float:
    """The standard error of a mean of ``n`` seeds; NaN (unknown) with fewer than two seeds."""
    if n < 2 or not math.isfinite(sd_value):
        return math.nan
    return sd_value / math.sqrt(n)


def summarize(frame: pd.DataFrame, keys: Sequence[str], value: str) -> pd.DataFrame:
    """Per group of ``keys``: ``n`` (values present), ``mean``, ``sd``, ``min`` and ``max`` of ``value``.

    The same ``mean`` and ``sd`` as above, group by group (groups in key order; missing keys form
    their own group)."""
    records = []
    for group, g in frame.groupby(list(keys), dropna=False, sort=True):
        present = g[value].astype(float).dropna()
        records.append(
            {
                **dict(zip(keys, group, strict=True)),
                "n": len(present),
                "mean": mean(present),
                "sd": sd(present),
                "min": float(present.min()) if len(present) else math.nan,
                "max": float(present.max()) if len(present) else math.nan,
            }
        )
    return pd.DataFrame(records, columns=[*keys, "n", "mean", "sd", "min", "max"])


@dataclass(frozen=True)
class Estimate:
    """A mean, or a difference of means, with its standard error (NaN: unknown, a group had < 2 seeds)."""

    value: float
    se: float

    @classmethod
    def of_group(cls, mean_value: float, sd_value: float, n: int) -> Estimate:
        return cls(mean_value, se(sd_value, n))

    def __sub__(self, other: Estimate) -> Estimate:
        return difference(self, other)

    def __neg__(self) -> Estimate:
        return Estimate(-self.value, self.se)


def difference(a: Estimate, b: Estimate) -> Estimate:
    """a - b for independent estimates: the variances add; an unknown se on either side stays unknown.

    Every comparison of two groups uses it: one method against another, a drop against another drop,
    and the one-shot gap (``oneshot_gap``)."""
    return Estimate(a.value - b.value, math.sqrt(a.se**2 + b.se**2))


def oneshot_gap(multi_round: Estimate, one_round: Estimate) -> Estimate:
    """Multi-round FedAvg minus one-shot at equal local compute: the difference of the two group means.

    Group means rather than the mean of per-seed (paired) differences, for three reasons. Every other
    comparison of two methods in the claims is a difference of group means with independent-groups
    standard errors, although those methods also share seeds and partitions, so one rule serves them
    all and the one-shot figure shows the very numbers the one-shot claims judge. A seed whose partner
    run failed still counts for the method that finished, instead of dropping both. And pairing would
    buy nothing certain: the two runs of a seed share the partition and the batches, which can
    correlate their final metrics either way, and with two or three seeds that correlation cannot be
    estimated, so the paired se is not reliably the smaller. With every seed paired, both give the same
    gap; only the se differs.
    """
    return difference(multi_round, one_round)


def pretrained_level(start_metrics: Iterable[float]) -> float:
    """The pretrained model's metric: the mean round-0 metric of the runs given (ok runs, by the
    callers' choice), the dotted reference line of the figures and the start of the default target."""
    return mean(start_metrics)


def half_gain_target(start: float, best: float) -> float:
    """The default target of ``bits_to_target``: half the best group's gain over the pretrained level.

    Half, not all of it, so that slower methods that do get somewhere are still compared, and the best
    method itself is not measured only at its very last evaluation."""
    return start + 0.5 * (best - start)


def first_reach(curve: pd.DataFrame, target: float) -> tuple[float, float] | None:
    """(cumulative uplink bits, round) at the first evaluated round, round 0 included, whose metric is
    >= ``target``; None when the curve never reaches it. ``curve`` holds one run's ``round``,
    ``metric`` and ``bits_up_cum``."""
    ordered = curve.sort_values("round")
    hit = ordered[ordered["metric"] >= target]
    if not len(hit):
        return None
    return float(hit.iloc[0]["bits_up_cum"]), float(hit.iloc[0]["round"])
