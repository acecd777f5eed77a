"""The statistics every table reports, on numbers whose results are worked out by hand in the comments."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from zofo.analysis import stats


def test_mean_sd_and_se_over_seeds() -> None:
    # 0.5, 0.7, 0.9: mean 0.7; deviations -0.2, 0, 0.2; sd = sqrt(0.08 / 2) = 0.2; se = 0.2 / sqrt(3).
    assert stats.mean([0.5, 0.7, 0.9]) == pytest.approx(0.7)
    assert stats.sd([0.5, 0.7, 0.9]) == pytest.approx(0.2)
    assert stats.se(0.2, 3) == pytest.approx(0.2 / math.sqrt(3))
    # Two values 1 and 3: sd = sqrt(2 / 1) (ddof = 1, not sqrt(2 / 2) = 1).
    assert stats.sd(pd.Series([1.0, 3.0])) == pytest.approx(math.sqrt(2))


def test_one_seed_has_no_spread_and_none_has_no_mean() -> None:
    assert stats.mean([0.4]) == 0.4
    assert math.isnan(stats.sd([0.4]))
    assert math.isnan(stats.se(0.1, 1))  # one seed: the standard error is unknown, not zero
    assert math.isnan(stats.se(math.nan, 5))
    assert math.isnan(stats.mean([]))
    # A run without a round-0 row (NaN start) is skipped: the mean of 0.2 and 0.4.
    assert stats.mean([0.2, math.nan, 0.4]) == pytest.approx(0.3)


def test_summarize_per_group() -> None:
    frame = pd.DataFrame(
        {
            "method": ["a", "a", "a", "b", "b"],
            "value": [1.0, 2.0, 6.0, 5.0, math.nan],
        }
    )
    out = stats.summarize(frame, ["method"], "value").set_index("method")
    # a: mean 3, deviations -2, -1, 3: sd = sqrt(14 / 2); b: its one value (NaN is not a value).
    assert out.loc["a", "n"] == 3 and out.loc["a", "mean"] == pytest.approx(3.0)
    assert out.loc["a", "sd"] == pytest.approx(math.sqrt(7.0))
    assert (out.loc["a", "min"], out.loc["a", "max"]) == (1.0, 6.0)
    assert out.loc["b", "n"] == 1 and out.loc["b", "mean"] == 5.0 and math.isnan(out.loc["b", "sd"])


def test_a_difference_of_independent_groups_adds_the_variances() -> None:
    # a: mean 0.9, sd 0.03, 3 seeds (se 0.03 / sqrt 3); b: mean 0.8, sd 0.04, 4 seeds (se 0.02).
    a = stats.Estimate.of_group(0.9, 0.03, 3)
    b = stats.Estimate.of_group(0.8, 0.04, 4)
    d = stats.difference(a, b)
    assert d.value == pytest.approx(0.1)
    assert d.se == pytest.approx(math.sqrt(0.0009 / 3 + 0.0004))  # sqrt(0.0003 + 0.0004)
    assert (a - b) == d and (-d).value == pytest.approx(-0.1) and (-d).se == d.se
    # A group with one seed makes the difference's se unknown.
    assert math.isnan((a - stats.Estimate.of_group(0.8, math.nan, 1)).se)


def test_the_oneshot_gap_is_the_difference_of_the_group_means() -> None:
    # FedAvg 0.72 (sd 0.02, 3 seeds), one-shot 0.62 (sd 0.02, 2 seeds; its third seed failed and is not
    # dropped from FedAvg's side): gap 0.10, se sqrt(0.0004 / 3 + 0.0004 / 2) = 0.02 sqrt(5 / 6).
    gap = stats.oneshot_gap(stats.Estimate.of_group(0.72, 0.02, 3), stats.Estimate.of_group(0.62, 0.02, 2))
    assert gap.value == pytest.approx(0.10)
    assert gap.se == pytest.approx(0.02 * math.sqrt(5 / 6))


def test_the_default_target_is_half_the_best_gain() -> None:
    # From 0.5 pretrained to the best group's 0.9: half the gain, 0.7.
    assert stats.half_gain_target(0.5, 0.9) == pytest.approx(0.7)
    assert stats.pretrained_level([0.5, 0.5, 0.6]) == pytest.approx(1.6 / 3)


def test_first_reach_is_the_first_evaluated_round_at_or_above_the_target() -> None:
    curve = pd.DataFrame(
        {"round": [4, 0, 2, 6], "metric": [0.75, 0.25, 0.5, 0.5], "bits_up_cum": [400, 0, 200, 600]}
    )
    # Rows out of order on purpose: round 2 (0.5 >= 0.5, exactly on the target) comes first.
    assert stats.first_reach(curve, 0.5) == (200.0, 2.0)
    assert stats.first_reach(curve, 0.25) == (0.0, 0.0)  # round 0 counts
    assert stats.first_reach(curve, 0.8) is None
