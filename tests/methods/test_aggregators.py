"""Aggregation rules: hand-worked answers on tiny arrays, and the robust rules resisting one attacker."""

from __future__ import annotations

import math

import pytest
import torch

from zofo.core.errors import ConfigError
from zofo.robust.aggregators import (
    AGGREGATORS,
    combine,
    coordinate_median,
    krum,
    krum_scores,
    majority_vote,
    mean,
    multi_krum,
    robust_floor,
    sign_majority,
    trimmed_mean,
)


def t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


# Five points on a line, n = 5 and f = 1, so each score sums the 2 nearest squared distances:
#   0: {1, 9, 100, 121} -> 1 + 9 = 10      1: {1, 4, 81, 100} -> 5      3: {9, 4, 49, 64} -> 13
#  10: {100, 81, 49, 1} -> 49 + 1 = 50    11: {121, 100, 64, 1} -> 64 + 1 = 65
LINE = t([[0.0], [1.0], [3.0], [10.0], [11.0]])
LINE_SCORES = [10.0, 5.0, 13.0, 50.0, 65.0]

# Four honest FedAvg-style updates around [1, -1, 0.5] (their mean exactly) and one attacker sending
# the first honest update scaled by 100.
HONEST = t([[1.1, -1.0, 0.5], [0.9, -1.0, 0.5], [1.0, -0.9, 0.5], [1.0, -1.1, 0.5]])
HONEST_MEAN = t([1.0, -1.0, 0.5])
ATTACKED = torch.cat([HONEST, 100 * HONEST[:1]])


def test_median_odd_and_even():
    assert coordinate_median(t([[1.0], [2.0], [100.0]])).tolist() == [2.0]
    assert coordinate_median(t([[1.0], [2.0], [3.0], [100.0]])).tolist() == [2.5]


def test_median_even_averages_the_middle_pair_per_coordinate():
    # column 0 sorted: 1 2 3 4 -> 2.5; column 1 sorted: -2 0 7 10 -> 3.5 (torch.median would say 2, 0)
    x = t([[1.0, 10.0], [4.0, -2.0], [2.0, 7.0], [3.0, 0.0]])
    assert coordinate_median(x).tolist() == [2.5, 3.5]


def test_median_of_scalars_and_nan_row():
    assert coordinate_median(t([3.0, -1.0, 5.0])).item() == 3.0
    # NaN sorts above every number: 1 2 3 4 NaN -> 3
    assert coordinate_median(t([[1.0], [math.nan], [2.0], [3.0], [4.0]])).tolist() == [3.0]


def test_median_of_huge_values_does_not_overflow():
    big = torch.finfo(torch.float64).max
    assert coordinate_median(t([[big], [big]])).tolist() == [big]


def test_trimmed_mean_drops_extremes():
    assert trimmed_mean(t([[1.0], [2.0], [3.0], [4.0], [1000.0]]), 0.2).tolist() == [3.0]
    # b = 1: column 0 sorted -50 0 1 2 10 -> (0+1+2)/3 = 1; column 1 sorted -100 5 6 7 8 -> 6
    x = t([[0.0, 5.0], [10.0, -100.0], [1.0, 6.0], [2.0, 7.0], [-50.0, 8.0]])
    assert trimmed_mean(x, 0.2).tolist() == [1.0, 6.0]
    assert trimmed_mean(x, 0.0).tolist() == [-37 / 5, -74 / 5]


def test_trimmed_mean_count_absorbs_float_error():
    # 0.29 * 100 is 28.999999999999996 in floats; the intended b is 29, keeping i = 29..70 of i^2.
    x = t([[float(i * i)] for i in range(100)])
    expected = sum(i * i for i in range(29, 71)) / 42
    assert trimmed_mean(x, 0.29).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("trim", "n"), [(0.5, 4), (-0.1, 4), (0.4999999999999, 2)])
def test_trimmed_mean_rejects_bad_trim(trim, n):
    with pytest.raises(ValueError) as e:
        trimmed_mean(torch.zeros(n, 1, dtype=torch.float64), trim)
    msg = str(e.value)
    assert f"trim = {trim}" in msg and f"n = {n}" in msg and "[0, 0.5)" in msg


def test_weighted_mean():
    x = t([[1.0, 0.0], [3.0, 4.0]])
    assert mean(x).tolist() == [2.0, 2.0]
    assert mean(x, torch.tensor([1.0, 3.0])).tolist() == [2.5, 3.0]  # (1 + 9) / 4, 12 / 4
    for bad in (torch.tensor([1.0, -1.0]), torch.tensor([0.0, 0.0]), torch.tensor([1.0, 1.0, 1.0])):
        with pytest.raises(ValueError, match="weights"):
            mean(x, bad)


def test_krum_scores_by_hand():
    assert krum_scores(LINE, 1).tolist() == LINE_SCORES
    # 2-D: (0,0) (1,0) (0,2) (3,4) (100,100); sums of the 2 nearest squared distances
    x = t([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [3.0, 4.0], [100.0, 100.0]])
    assert krum_scores(x, 1).tolist() == [1 + 4, 1 + 5, 4 + 5, 13 + 20, 18625 + 19604]


def test_krum_and_multi_krum_by_hand():
    assert krum(LINE, 1).tolist() == [1.0]
    assert multi_krum(LINE, 1, 3).item() == pytest.approx(4 / 3)  # rows scoring 5, 10, 13: 1, 0, 3
    assert multi_krum(LINE, 1).item() == 3.5  # m = n - f = 4: (1 + 0 + 3 + 10) / 4


def test_krum_ties_go_to_the_lowest_index():
    # Rows 0-3 all score 0 + 25; row 0 must win over row 2 although both tie.
    x = t([[0.0], [0.0], [5.0], [5.0], [100.0]])
    assert krum_scores(x, 1).tolist()[:4] == [25.0] * 4
    assert krum(x, 1).tolist() == [0.0]
    assert multi_krum(x, 1, 2).tolist() == [0.0]  # rows 0 and 1
    assert multi_krum(x, 1, 3).item() == pytest.approx(5 / 3)  # rows 0, 1, 2


def test_krum_picks_an_honest_row_against_a_scaled_attacker():
    chosen = krum(ATTACKED, 1)
    assert any(torch.equal(chosen, h) for h in HONEST), chosen


def test_krum_needs_enough_rows():
    with pytest.raises(ValueError) as e:
        krum_scores(torch.zeros(4, 2, dtype=torch.float64), 1)
    assert "n = 4" in str(e.value) and "f = 1" in str(e.value) and "5" in str(e.value)
    with pytest.raises(ValueError, match="m = 6"):
        multi_krum(LINE, 1, 6)


def test_krum_never_picks_a_nan_row():
    x = torch.cat([LINE[:4], t([[math.nan]])])
    assert krum(x, 1).tolist() == [1.0]


def test_mean_is_dragged_but_robust_rules_are_not():
    assert mean(ATTACKED).tolist() == pytest.approx([22.8, -20.8, 10.4])  # (4 * mean + 100 * h1) / 5
    assert torch.dist(combine("mean", "dense", ATTACKED), HONEST_MEAN) > 10
    for name in ("median", "trimmed-mean", "krum", "multi-krum"):
        got = combine(name, "dense", ATTACKED)
        assert torch.dist(got, HONEST_MEAN) < 0.2, (name, got)
    # Per coordinate the middle of five is an honest value equal to the honest mean here.
    assert combine("median", "dense", ATTACKED).tolist() == pytest.approx([1.0, -1.0, 0.5])


def signs_with(n: int, byz: int, honest: bool) -> torch.Tensor:
    return torch.tensor([not honest] * byz + [honest] * (n - byz))


@pytest.mark.parametrize(("n", "byz"), [(n, b) for n in range(3, 10) for b in range((n + 1) // 2)])
@pytest.mark.parametrize("honest", [True, False])
def test_majority_survives_a_reversing_minority(n, byz, honest):
    for tie_break in (True, False):
        assert majority_vote(signs_with(n, byz, honest), tie_break) is honest


def test_majority_tie_rule():
    for signs in (torch.tensor([True, False]), torch.tensor([False, True, True, False])):
        assert majority_vote(signs, tie_break=True) is True
        assert majority_vote(signs, tie_break=False) is False
    x = torch.tensor([[True, False, True], [True, False, False], [False, True, True], [False, False, True]])
    assert sign_majority(x, True).tolist() == [True, False, True]  # 2-2 tie, 1 of 4, 3 of 4
    assert sign_majority(x, False).tolist() == [False, False, True]
    with pytest.raises(ValueError, match="bool"):
        majority_vote(torch.tensor([1.0, 0.0, 1.0]), False)


def test_aggregator_table():
    kinds = {name: spec.kinds for name, spec in AGGREGATORS.items()}
    assert kinds == {
        "mean": {"dense", "scalar"},
        "median": {"dense", "scalar"},
        "trimmed-mean": {"dense", "scalar"},
        "krum": {"dense"},
        "multi-krum": {"dense"},
        "majority": {"sign"},
    }
    assert all(spec.name == name for name, spec in AGGREGATORS.items())


@pytest.mark.parametrize(
    ("name", "kind", "allowed"),
    [
        ("krum", "scalar", "['mean', 'median', 'trimmed-mean']"),
        ("mean", "sign", "['majority']"),
        ("majority", "dense", "['krum', 'mean', 'median', 'multi-krum', 'trimmed-mean']"),
        ("medain", "dense", "did you mean 'median'"),
    ],
)
def test_combine_rejects_unknown_or_inapplicable_names(name, kind, allowed):
    with pytest.raises(ConfigError) as e:
        combine(name, kind, torch.zeros(5, 2, dtype=torch.float64))
    assert e.value.key == "aggregator.name" and e.value.value == name
    assert allowed in e.value.allowed


def test_combine_dispatches_options():
    assert combine("trimmed-mean", "dense", t([[1.0], [2.0], [9.0], [10.0]]), trim=0.25).tolist() == [5.5]
    assert combine("multi-krum", "dense", LINE, f=1, m=3).item() == pytest.approx(4 / 3)
    assert combine("majority", "sign", torch.tensor([True, False]), tie_break=True).item() is True
    assert combine("median", "scalar", t([4.0, -2.0, 1.0])).item() == 1.0


def test_robust_rules_ignore_self_reported_weights():
    # The attacker claims 1,000x the data: the weighted mean follows it, the median does not.
    x = t([[1.0], [2.0], [3.0], [4.0], [500.0]])
    w = torch.tensor([1.0, 1.0, 1.0, 1.0, 1000.0])
    assert combine("mean", "scalar", x, weights=w).item() == pytest.approx((10 + 500_000) / 1004)
    assert combine("median", "scalar", x, weights=w).tolist() == [3.0]
    assert combine("trimmed-mean", "scalar", x, weights=w, trim=0.2).tolist() == [3.0]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_dtype_kept_and_input_untouched(dtype):
    x = ATTACKED.to(dtype)
    before = x.clone()
    for name in ("mean", "median", "trimmed-mean", "krum", "multi-krum"):
        assert combine(name, "dense", x).dtype == dtype
    assert torch.equal(x, before)


def test_robust_floor():
    assert robust_floor(0.29 * 100) == 29
    assert robust_floor(0.3 * 10) == 3
    assert robust_floor(2.5) == 2
    assert robust_floor(-0.5) == -1
