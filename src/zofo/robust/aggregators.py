"""Aggregation rules over the rows of ``x`` (one row per client): the mean and robust alternatives.

Every rule reduces dimension 0 of ``x`` (shape ``[n, *rest]``) to a result of shape ``rest``, keeps
the input's floating dtype (float64 stays float64) and holds no state. NaN sorts above every number,
so the order-based rules (median, trimmed mean, Krum) treat a NaN row like a huge one instead of
letting it poison the result.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from zofo.core.errors import ConfigError, did_you_mean

KINDS = frozenset({"dense", "scalar", "sign"})


def robust_floor(x: float) -> int:
    """``floor(x)``, but a value within float rounding error of an integer counts as that integer.

    ``0.29 * 100`` is ``28.999999999999996`` in binary floats; a user who asks for 29% of 100 means 29.
    """
    nearest = round(x)
    if abs(x - nearest) <= 1e-9 * max(1.0, abs(x)):
        return int(nearest)
    return math.floor(x)


def _num_rows(x: Tensor) -> int:
    if x.ndim < 1 or x.shape[0] < 1:
        raise ValueError(f"aggregation needs at least one row (client); got shape {tuple(x.shape)}")
    return x.shape[0]


def mean(x: Tensor, weights: Tensor | None = None) -> Tensor:
    """Row mean; with ``weights`` (shape ``[n]``, >= 0, positive sum) each row counts ``w_i / sum(w)``."""
    n = _num_rows(x)
    if weights is None:
        return x.mean(dim=0)
    w = weights.to(dtype=x.dtype, device=x.device)
    if w.shape != (n,):
        raise ValueError(f"mean: weights have shape {tuple(w.shape)}; allowed: ({n},), one per row")
    total = w.sum()
    if not torch.isfinite(w).all() or (w < 0).any() or total <= 0:
        raise ValueError(f"mean: weights {w.tolist()}; allowed: finite, >= 0, with a positive sum")
    return torch.tensordot(w / total, x, dims=1)


def coordinate_median(x: Tensor) -> Tensor:
    """Per-coordinate median. For even n it is the average of the two middle values.

    ``torch.median`` returns the lower middle value instead; the average is the textbook median and is
    symmetric under negating the input.
    """
    n = _num_rows(x)
    s = x.sort(dim=0).values
    if n % 2:
        return s[n // 2].clone()
    # Halve before adding: the sum of two huge finite values would overflow to inf.
    return s[n // 2 - 1] / 2 + s[n // 2] / 2


def trimmed_mean(x: Tensor, trim: float) -> Tensor:
    """Per coordinate, drop the ``b = floor(trim * n)`` largest and ``b`` smallest values and average
    the rest (``trim * n`` within float error of an integer counts as that integer)."""
    n = _num_rows(x)
    if not 0 <= trim < 0.5:
        raise ValueError(f"trimmed_mean: trim = {trim} with n = {n} rows; allowed: trim in [0, 0.5)")
    b = robust_floor(trim * n)
    if 2 * b >= n:
        raise ValueError(
            f"trimmed_mean: trim = {trim} with n = {n} rows drops b = {b} values from each end, leaving "
            f"none; allowed: trim in [0, 0.5) with 2 * floor(trim * n) < n"
        )
    return x.sort(dim=0).values[b : n - b].mean(dim=0)


def krum_scores(x: Tensor, f: int) -> Tensor:
    """Krum score of each row (Blanchard et al. 2017): the sum of its squared Euclidean distances to
    its ``n - f - 2`` nearest other rows. Needs ``n >= 2f + 3``.

    A NaN distance counts as +inf, so a NaN row is never anyone's neighbour and never has a low score.
    """
    n = _num_rows(x)
    if f < 0 or n < 2 * f + 3:
        raise ValueError(
            f"krum: n = {n} rows with f = {f} Byzantine; allowed: f >= 0 and n >= 2f + 3 = {2 * f + 3}"
        )
    flat = x.reshape(n, -1)
    # One row at a time: exact differences (no |a|^2 + |b|^2 - 2ab cancellation) in O(n d) memory.
    d2 = torch.stack([(flat - flat[i]).pow(2).sum(dim=1) for i in range(n)])
    d2 = torch.nan_to_num(d2, nan=math.inf)
    d2.fill_diagonal_(math.inf)
    nearest = d2.sort(dim=1).values[:, : n - f - 2]
    return nearest.sum(dim=1)


def krum(x: Tensor, f: int) -> Tensor:
    """The row with the lowest Krum score; on a tie the lowest row index wins."""
    return x[int(torch.argmin(krum_scores(x, f)))].clone()


def multi_krum(x: Tensor, f: int, m: int | None = None) -> Tensor:
    """Mean of the ``m`` rows with the lowest Krum scores (``m = None``: ``n - f``).

    The scores are computed once on all rows and the best ``m`` are taken together, as the common
    implementations do, rather than re-scoring after each pick as in the paper's description. Ties go
    to the lower row index.
    """
    n = _num_rows(x)
    m = n - f if m is None else m
    if not 1 <= m <= n:
        raise ValueError(f"multi_krum: m = {m} with n = {n} rows; allowed: 1 <= m <= {n}")
    order = torch.sort(krum_scores(x, f), stable=True).indices
    return x[order[:m]].mean(dim=0)


def sign_majority(signs: Tensor, tie_break: bool) -> Tensor:
    """Per-coordinate majority of boolean rows (True = +1): True where more rows are True than False,
    False where fewer, ``tie_break`` on a tie."""
    n = _num_rows(signs)
    if signs.dtype != torch.bool:
        raise ValueError(f"sign_majority: signs have dtype {signs.dtype}; allowed: torch.bool")
    up = signs.sum(dim=0)
    down = n - up
    return torch.where(up == down, torch.tensor(tie_break, device=signs.device), up > down)


def majority_vote(signs: Tensor, tie_break: bool) -> bool:
    """Majority of one boolean per client (shape ``[n]``; True = +1); ``tie_break`` on a tie."""
    if signs.ndim != 1:
        raise ValueError(f"majority_vote: signs have shape {tuple(signs.shape)}; allowed: [n]")
    return bool(sign_majority(signs, tie_break))


@dataclass(frozen=True)
class AggregatorSpec:
    name: str
    # Payload kinds the rule makes sense for: order statistics need numbers, a vote needs signs.
    kinds: frozenset[str]
    fn: Callable[..., Tensor]
    # Which of combine()'s keyword options the rule takes.
    params: tuple[str, ...] = ()


AGGREGATORS: dict[str, AggregatorSpec] = {
    spec.name: spec
    for spec in [
        AggregatorSpec("mean", frozenset({"dense", "scalar"}), mean, ("weights",)),
        AggregatorSpec("median", frozenset({"dense", "scalar"}), coordinate_median),
        AggregatorSpec("trimmed-mean", frozenset({"dense", "scalar"}), trimmed_mean, ("trim",)),
        AggregatorSpec("krum", frozenset({"dense"}), krum, ("f",)),
        AggregatorSpec("multi-krum", frozenset({"dense"}), multi_krum, ("f", "m")),
        AggregatorSpec("majority", frozenset({"sign"}), sign_majority, ("tie_break",)),
    ]
}


def combine(
    name: str,
    kind: str,
    x: Tensor,
    *,
    weights: Tensor | None = None,
    trim: float = 0.2,
    f: int = 1,
    m: int | None = None,
    tie_break: bool = False,
) -> Tensor:
    """Aggregate the rows of ``x`` (one per client) of a payload of ``kind`` with the rule ``name``.

    Only "mean" uses ``weights``; the robust rules ignore them, because weighting by the data size a
    client reports about itself would let an attacker buy influence by claiming a large data set.
    """
    if kind not in KINDS:
        raise ValueError(f"combine: payload kind {kind!r}; allowed: one of {sorted(KINDS)}")
    spec = AGGREGATORS.get(name)
    if spec is None or kind not in spec.kinds:
        valid = sorted(n for n, s in AGGREGATORS.items() if kind in s.kinds)
        raise ConfigError(
            "aggregator.name", name, f"one of {valid} for {kind} payloads" + did_you_mean(name, valid)
        )
    options = {"weights": weights, "trim": trim, "f": f, "m": m, "tie_break": tie_break}
    return spec.fn(x, **{p: options[p] for p in spec.params})
