"""The claims table on hand-built tables whose verdicts are worked out by hand.

Most groups have n = 2 seeds and sd 0.01, so a group's standard error is 0.01 / sqrt(2) and
- a difference of two such groups has se = sqrt(2 * 0.01^2 / 2) = 0.01: 2 se = 0.02;
- a difference of differences (four groups) has se = sqrt(4 * 0.01^2 / 2) = 0.01414: 2 se = 0.02828.
Boundary tests put the difference 0.001 inside and 0.001 outside these bounds.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from zofo.analysis.claims import (
    CLAIMS,
    COLUMNS,
    DOES_NOT_HOLD,
    HOLDS,
    INCONCLUSIVE,
    VERDICTS,
    Evidence,
    assess,
    claims_table,
    largest_model,
    read_evidence,
    write_claims,
)

SD = 0.01
N = 2
KEYS = [
    "feedsign-one-bit",
    "feedsign-uplink-1/64",
    "feedsign-non-iid",
    "feedsign-vs-fo",
    "feedsign-byzantine",
    "feedsign-heterogeneity",
    "fedkseed-uplink-18kb",
    "fedkseed-vs-fedit",
    "pro-vs-fedkseed",
    "ferret-comm-1e6",
    "ferret-rounds",
    "ferret-compute-6x",
    "ferret-vs-fedavg",
    "oneshot-matches",
    "oneshot-gap-shrinks",
]
PAPERS = ["FeedSign"] * 6 + ["FedKSeed"] * 2 + ["FedKSeed-Pro"] + ["Ferret"] * 4 + ["One-shot FL"] * 2

# SmolLM2-135M's trainable parameters: FedAvg sends 32 d + 32 bits up and 32 d down.
D = 134_515_008
MAIN_MEANS = {
    "fedavg": 0.88,
    "fedavg-lora": 0.80,
    "ferret": 0.87,
    "fedkseed": 0.84,
    "fedkseed-pro": 0.87,
    "feedsign": 0.85,
    "zo-fedsgd": 0.80,
}


def grp(method: str, mean: float, *, sd: float = SD, n: int = N, **keys: Any) -> dict[str, Any]:
    """One final_metric_table row with only the columns the claims read."""
    row: dict[str, Any] = {
        "method": method,
        "model": "smollm2-135m",
        "alpha": 0.5,
        "byz_frac": 0.0,
        "aggregator": "mean",
        "n_seeds": n,
        "final_mean": mean,
        "final_sd": sd if n > 1 else math.nan,
    }
    row.update(keys)
    return row


def main_frame(**override: float | tuple[float, float, int]) -> pd.DataFrame:
    """The main study; ``override`` sets a mean, or (mean, sd, n), per method (underscores for dashes)."""
    means: dict[str, Any] = dict(MAIN_MEANS)
    means.update({k.replace("_", "-"): v for k, v in override.items()})
    rows = []
    for method, v in means.items():
        mean, sd, n = v if isinstance(v, tuple) else (v, SD, N)
        rows.append(grp(method, mean, sd=sd, n=n))
    return pd.DataFrame(rows)


def comm_frame(**override: tuple[float, float]) -> pd.DataFrame:
    bits = {
        "fedavg": (32 * D + 32, 32 * D),
        "fedavg-lora": (14_745_632, 14_745_600),
        "oneshot": (32 * D + 32, 32 * D),
        "ferret": (9932, 49_660),
        "fedkseed": (131_072, 131_072),
        "fedkseed-pro": (131_072, 131_072),
        "feedsign": (1, 1),
        "zo-fedsgd": (64, 320),
    }
    bits.update({k.replace("_", "-"): v for k, v in override.items()})
    return pd.DataFrame(
        [
            {"method": m, "bits_up_per_client_round": float(u), "bits_down_per_client_round": float(d)}
            for m, (u, d) in bits.items()
        ]
    )


def target_frame(**reach: tuple[int, float]) -> pd.DataFrame:
    """Rounds to the target: (n_reached of 2 runs, mean rounds over the runs that reached it)."""
    got = {"ferret": (2, 2.0), "fedavg": (2, 2.0), "fedkseed": (2, 6.0)}
    got.update(reach)
    return pd.DataFrame(
        [
            {"method": m, "n_runs": 2, "n_reached": k, "rounds_to_target_mean": r, "target": 0.85}
            for m, (k, r) in got.items()
        ]
    )


def cost_frame(ferret: float = 5.0, fedkseed: float = 12.0) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"method": "ferret", "n_seeds": 2, "client_seconds_per_round_mean": ferret},
            {"method": "fedkseed", "n_seeds": 2, "client_seconds_per_round_mean": fedkseed},
        ]
    )


def hetero_frame(feedsign_lo: float = 0.84, n: int = N) -> pd.DataFrame:
    # FeedSign drops 0.02 from iid to alpha 0.1, FedAvg 0.05. The middle alpha would reverse the verdict
    # (FeedSign drops 0.26 to it): the claim must use the extremes.
    return pd.DataFrame(
        [
            grp("feedsign", 0.86, alpha=math.inf, n=n),
            grp("feedsign", 0.60, alpha=0.5, n=n),
            grp("feedsign", feedsign_lo, alpha=0.1, n=n),
            grp("fedavg", 0.90, alpha=math.inf, n=n),
            grp("fedavg", 0.88, alpha=0.5, n=n),
            grp("fedavg", 0.85, alpha=0.1, n=n),
        ]
    )


def byz_frame(feedsign_at_04: float = 0.69, n: int = N) -> pd.DataFrame:
    rows = []
    # FeedSign under its vote: drops 0.01 at 0.4; at 0.6 (a majority) it collapses, worse than ZO-FedSGD:
    # choosing 0.6 instead of the largest fraction below 0.5 would turn the verdict.
    for f, m in ((0.0, 0.70), (0.2, 0.69), (0.4, feedsign_at_04), (0.6, 0.05)):
        rows.append(grp("feedsign", m, byz_frac=f, aggregator="majority", attack="reversed", n=n))
    # ZO-FedSGD under the mean drops 0.5; under the median it would drop 0.01 (not the comparison).
    for f, m in ((0.0, 0.70), (0.2, 0.20), (0.4, 0.20), (0.6, 0.20)):
        rows.append(grp("zo-fedsgd", m, byz_frac=f, aggregator="mean", attack="scaled-negative", n=n))
    for f, m in ((0.0, 0.70), (0.2, 0.69), (0.4, 0.69), (0.6, 0.10)):
        rows.append(grp("zo-fedsgd", m, byz_frac=f, aggregator="median", attack="scaled-negative", n=n))
    return pd.DataFrame(rows)


def gap_row(
    model: str, size: float, fedavg: float, oneshot: float, *, n: int = N, **keys: Any
) -> dict[str, Any]:
    """One gap_table row: FedAvg's and one-shot's groups (sd 0.01, n seeds) and their gap, whose se is
    sqrt(2 * 0.01^2 / 2) = 0.01 with two seeds each, unknown with one."""
    row: dict[str, Any] = {
        "model": model,
        "parameters": size,
        "alpha": 0.5,
        "byz_frac": 0.0,
        "aggregator": "mean",
        "fedavg_mean": fedavg,
        "fedavg_sd": SD if n > 1 else math.nan,
        "fedavg_n": n,
        "oneshot_mean": oneshot,
        "oneshot_sd": SD if n > 1 else math.nan,
        "oneshot_n": n,
        "gap": fedavg - oneshot,
        "gap_se": 0.01 if n > 1 else math.nan,
    }
    row.update(keys)
    return row


def oneshot_frame(
    small: tuple[float, float] = (0.80, 0.70), large: tuple[float, float] = (0.88, 0.875), n: int = N
) -> pd.DataFrame:
    """The gap table: (FedAvg, one-shot) at a 1e7- and a D-parameter model, alpha 0.5; at iid the gap
    grows instead."""
    rows = [gap_row("tiny", 1e7, *small, n=n), gap_row("smollm2-135m", float(D), *large, n=n)]
    rows += [
        gap_row("tiny", 1e7, 0.80, 0.80, alpha=math.inf),
        gap_row("smollm2-135m", float(D), 0.90, 0.70, alpha=math.inf),
    ]
    return pd.DataFrame(rows)


def reference() -> Evidence:
    return Evidence(
        main=main_frame(),
        comm=comm_frame(),
        cost=cost_frame(),
        to_target=target_frame(),
        heterogeneity=hetero_frame(),
        byzantine=byz_frame(),
        oneshot=oneshot_frame(),
    )


def row(ev: Evidence, key: str) -> dict[str, Any]:
    # One claim alone (the whole table is tested apart): the same finding claims_table would put in its row.
    found = assess(CLAIMS[KEYS.index(key)], ev)
    return {"evidence": found.evidence, "verdict": found.verdict, "reason": found.reason}


def verdict(ev: Evidence, key: str) -> str:
    return str(row(ev, key)["verdict"])


def with_(**changes: Any) -> Evidence:
    return dataclasses.replace(reference(), **changes)


# --------------------------------------------------------------------------------------------------
# the table's shape


def test_reference_evidence_every_claim_holds() -> None:
    table = claims_table(reference())
    assert dict(zip(KEYS, table["verdict"], strict=True)) == dict.fromkeys(KEYS, HOLDS)


@pytest.mark.parametrize("ev", [reference(), Evidence(main=main_frame(), comm=comm_frame())])
def test_every_claim_present_in_fixed_order_with_an_allowed_verdict(ev: Evidence) -> None:
    table = claims_table(ev)
    assert list(table.columns) == list(COLUMNS) == ["paper", "claim", "evidence", "verdict", "reason"]
    assert [c.key for c in CLAIMS] == KEYS
    assert list(table["paper"]) == PAPERS
    assert list(table["claim"]) == [c.text for c in CLAIMS]
    assert set(table["verdict"]) <= set(VERDICTS)
    assert VERDICTS == ("holds", "does not hold", "inconclusive at this scale")
    assert table["evidence"].str.len().min() > 0 and table["reason"].str.len().min() > 0


def test_table_rows_are_the_single_claim_findings() -> None:
    ev = with_(byzantine=byz_frame(n=1), to_target=None)
    table = claims_table(ev)
    for i, key in enumerate(KEYS):
        assert table.iloc[i][["evidence", "verdict", "reason"]].to_dict() == row(ev, key)


def test_evidence_quotes_the_numbers_used() -> None:
    ev = reference()
    assert "FeedSign 0.850 ± 0.010 (n=2)" in row(ev, "feedsign-non-iid")["evidence"]
    assert "ZO-FedSGD 0.800 ± 0.010 (n=2)" in row(ev, "feedsign-non-iid")["evidence"]
    comm = row(ev, "ferret-comm-1e6")["evidence"]
    assert "4,304,480,288" in comm and "9,932" in comm and "4.33e5" in comm and "d = 1.35e8" in comm
    assert "131,072 bits = 16.0 KiB" in row(ev, "fedkseed-uplink-18kb")["evidence"]
    assert "ratio 7.2" in row(ev, "ferret-compute-6x")["evidence"]


# --------------------------------------------------------------------------------------------------
# the 2-se rule


@pytest.mark.parametrize(
    ("feedsign", "expected"),
    [(0.821, HOLDS), (0.819, INCONCLUSIVE), (0.781, INCONCLUSIVE), (0.779, DOES_NOT_HOLD)],
)
def test_direction_claim_at_two_standard_errors(feedsign: float, expected: str) -> None:
    # ZO-FedSGD 0.80, both n = 2, sd 0.01: 2 se = 0.02.
    got = row(with_(main=main_frame(feedsign=feedsign)), "feedsign-non-iid")
    assert got["verdict"] == expected
    if expected == INCONCLUSIVE:
        assert "within 2 standard errors over seeds" in got["reason"]


@pytest.mark.parametrize(
    ("key", "method", "base"),
    [("fedkseed-vs-fedit", "fedkseed", 0.80), ("pro-vs-fedkseed", "fedkseed_pro", 0.84)],
)
@pytest.mark.parametrize(
    ("offset", "expected"), [(0.021, HOLDS), (0.019, INCONCLUSIVE), (-0.021, DOES_NOT_HOLD)]
)
def test_fedkseed_direction_claims(key: str, method: str, base: float, offset: float, expected: str) -> None:
    assert verdict(with_(main=main_frame(**{method: base + offset})), key) == expected


@pytest.mark.parametrize(("feedsign", "expected"), [(0.801, HOLDS), (0.799, DOES_NOT_HOLD), (0.95, HOLDS)])
def test_feedsign_at_most_six_points_below_fedavg(feedsign: float, expected: str) -> None:
    # FedAvg 0.88: the floor is 0.88 - 0.06 - 2 se = 0.80.
    assert verdict(with_(main=main_frame(feedsign=feedsign)), "feedsign-vs-fo") == expected


@pytest.mark.parametrize(("ferret", "expected"), [(0.861, HOLDS), (0.859, DOES_NOT_HOLD)])
def test_ferret_comparable_to_fedavg(ferret: float, expected: str) -> None:
    assert verdict(with_(main=main_frame(ferret=ferret)), "ferret-vs-fedavg") == expected


@pytest.mark.parametrize(
    "key", ["feedsign-non-iid", "feedsign-vs-fo", "ferret-vs-fedavg", "fedkseed-vs-fedit"]
)
def test_single_seed_is_inconclusive(key: str) -> None:
    # Differences far beyond any plausible spread, but one seed per group: se unknown.
    single: dict[str, Any] = {m: (v, math.nan, 1) for m, v in MAIN_MEANS.items()}
    single.update(feedsign=(0.99, math.nan, 1), ferret=(0.30, math.nan, 1), fedkseed=(0.99, math.nan, 1))
    main = main_frame(**single)
    got = row(with_(main=main), key)
    assert got["verdict"] == INCONCLUSIVE
    assert "fewer than 2 seeds" in got["reason"]


def test_main_study_claims_use_the_non_iid_alpha() -> None:
    # An iid row set that would reverse the verdict must not be read.
    main = pd.concat([main_frame(), main_frame(feedsign=0.70).assign(alpha=math.inf)], ignore_index=True)
    assert verdict(with_(main=main), "feedsign-non-iid") == HOLDS
    assert "Dirichlet alpha 0.5" in row(with_(main=main), "feedsign-non-iid")["evidence"]
    iid_only = row(with_(main=main_frame().assign(alpha=math.inf)), "feedsign-non-iid")
    assert iid_only["verdict"] == INCONCLUSIVE and "iid" in iid_only["reason"]


# --------------------------------------------------------------------------------------------------
# exact claims


@pytest.mark.parametrize(
    ("up", "down", "expected"), [(1, 1, HOLDS), (2, 1, DOES_NOT_HOLD), (1, 5, DOES_NOT_HOLD)]
)
def test_feedsign_one_bit_is_exact(up: int, down: int, expected: str) -> None:
    # Exact claims need no seeds: a single-seed main study changes nothing.
    single = main_frame(**{m: (v, math.nan, 1) for m, v in MAIN_MEANS.items()})
    assert verdict(with_(main=single, comm=comm_frame(feedsign=(up, down))), "feedsign-one-bit") == expected


@pytest.mark.parametrize(
    ("feedsign", "zo", "expected"), [(1, 64, HOLDS), (1, 32, DOES_NOT_HOLD), (2, 64, DOES_NOT_HOLD)]
)
def test_feedsign_uplink_ratio_is_exact(feedsign: int, zo: int, expected: str) -> None:
    ev = with_(comm=comm_frame(feedsign=(feedsign, feedsign), zo_fedsgd=(zo, 5 * zo)))
    assert verdict(ev, "feedsign-uplink-1/64") == expected


@pytest.mark.parametrize(
    ("bits", "expected"), [(131_072, HOLDS), (18 * 8 * 1024 - 1, HOLDS), (18 * 8 * 1024, DOES_NOT_HOLD)]
)
def test_fedkseed_uplink_under_18_kib_is_exact(bits: int, expected: str) -> None:
    assert verdict(with_(comm=comm_frame(fedkseed=(bits, bits))), "fedkseed-uplink-18kb") == expected


# --------------------------------------------------------------------------------------------------
# Ferret


@pytest.mark.parametrize(
    ("d", "ferret_up", "expected"),
    [
        (D, 9932, HOLDS),  # 4.33e5: of the order 10^6
        (D, 13_600, HOLDS),  # 3.165e5, just above 10^5.5 = 3.162e5
        (D, 13_700, INCONCLUSIVE),  # 3.142e5, just below
        (1_000_000, 9932, INCONCLUSIVE),  # small d: 3.22e3
        (2_000_000_000, 6_400_000, DOES_NOT_HOLD),  # billion-scale d and still 1e4
    ],
)
def test_ferret_communication_ratio_scales_with_d(d: int, ferret_up: int, expected: str) -> None:
    got = row(
        with_(comm=comm_frame(fedavg=(32 * d + 32, 32 * d), ferret=(ferret_up, 5 * ferret_up))),
        "ferret-comm-1e6",
    )
    assert got["verdict"] == expected
    if d == 1_000_000:
        assert "3.22e3" in got["reason"] and "d = 1e6" in got["reason"]


NEVER = (0, math.nan)


@pytest.mark.parametrize(
    ("ferret", "fedavg", "fedkseed", "expected"),
    [
        ((2, 3.0), (2, 2.0), (2, 6.0), HOLDS),  # exactly one round more than FedAvg
        ((2, 3.5), (2, 2.0), (2, 6.0), DOES_NOT_HOLD),  # more than one round more
        ((2, 2.0), (2, 2.0), (2, 2.0), DOES_NOT_HOLD),  # not fewer than FedKSeed
        ((2, 2.0), (2, 2.0), NEVER, HOLDS),  # FedKSeed never reached it: more rounds than any that did
        (NEVER, (2, 2.0), (2, 6.0), DOES_NOT_HOLD),
        (NEVER, NEVER, NEVER, INCONCLUSIVE),
        ((1, 2.0), (2, 2.0), (2, 6.0), INCONCLUSIVE),  # Ferret's mean is a lower bound only
    ],
)
def test_ferret_rounds_to_target(
    ferret: tuple[int, float], fedavg: tuple[int, float], fedkseed: tuple[int, float], expected: str
) -> None:
    ev = with_(to_target=target_frame(ferret=ferret, fedavg=fedavg, fedkseed=fedkseed))
    assert verdict(ev, "ferret-rounds") == expected


@pytest.mark.parametrize(
    ("fedkseed_s", "reach", "expected"),
    [
        (10.0, {}, HOLDS),  # 6 x 10 / (2 x 5) = 6.0
        (9.9, {}, INCONCLUSIVE),  # 5.94: cheaper, but not 6x
        (1.0, {}, DOES_NOT_HOLD),  # 0.6: Ferret costs more
        (12.0, {"ferret": NEVER}, DOES_NOT_HOLD),
        (12.0, {"fedkseed": NEVER}, INCONCLUSIVE),  # how much more FedKSeed would need is unknown
    ],
)
def test_ferret_compute_to_target(
    fedkseed_s: float, reach: dict[str, tuple[int, float]], expected: str
) -> None:
    ev = with_(cost=cost_frame(ferret=5.0, fedkseed=fedkseed_s), to_target=target_frame(**reach))
    got = row(ev, "ferret-compute-6x")
    assert got["verdict"] == expected
    assert "shared" in got["reason"] or expected != HOLDS


# --------------------------------------------------------------------------------------------------
# FeedSign robustness


def test_byzantine_uses_largest_minority_fraction_and_the_mean_for_zo_fedsgd() -> None:
    got = row(reference(), "feedsign-byzantine")
    assert got["verdict"] == HOLDS
    assert (
        "0 -> 0.4" in got["evidence"] and "drop 0.010" in got["evidence"] and "drop 0.500" in got["evidence"]
    )


@pytest.mark.parametrize(
    ("feedsign_at_04", "expected"),
    # ZO-FedSGD drops 0.5; four groups: 2 se = 0.0283.
    [(0.229, HOLDS), (0.227, INCONCLUSIVE), (0.10, DOES_NOT_HOLD)],
)
def test_byzantine_drop_at_two_standard_errors(feedsign_at_04: float, expected: str) -> None:
    assert verdict(with_(byzantine=byz_frame(feedsign_at_04)), "feedsign-byzantine") == expected


def test_byzantine_single_seed_is_inconclusive() -> None:
    got = row(with_(byzantine=byz_frame(n=1)), "feedsign-byzantine")
    assert got["verdict"] == INCONCLUSIVE and "fewer than 2 seeds" in got["reason"]


@pytest.mark.parametrize(("feedsign_lo", "expected"), [(0.782, HOLDS), (0.781, DOES_NOT_HOLD)])
def test_heterogeneity_drop_not_larger_than_fedavg(feedsign_lo: float, expected: str) -> None:
    # FedAvg drops 0.05 from iid to alpha 0.1; FeedSign's drop may exceed it by 2 se = 0.0283 at most.
    assert verdict(with_(heterogeneity=hetero_frame(feedsign_lo)), "feedsign-heterogeneity") == expected


# --------------------------------------------------------------------------------------------------
# one-shot


@pytest.mark.parametrize(
    ("large", "expected"), [((0.88, 0.861), HOLDS), ((0.88, 0.859), DOES_NOT_HOLD), ((0.80, 0.85), HOLDS)]
)
def test_oneshot_matches_at_the_largest_model(large: tuple[float, float], expected: str) -> None:
    got = row(with_(oneshot=oneshot_frame(large=large)), "oneshot-matches")
    assert got["verdict"] == expected
    assert "smollm2-135m (1.35e8 parameters)" in got["evidence"]


@pytest.mark.parametrize(
    ("small", "large", "expected"),
    [
        ((0.80, 0.70), (0.88, 0.875), HOLDS),  # gap 0.10 -> 0.005
        ((0.80, 0.795), (0.88, 0.78), DOES_NOT_HOLD),  # gap 0.005 -> 0.10
        ((0.80, 0.75), (0.88, 0.859), HOLDS),  # 0.05 -> 0.021: shrinks by 0.029 > 0.0283
        ((0.80, 0.75), (0.88, 0.857), INCONCLUSIVE),  # 0.05 -> 0.023: by 0.027
    ],
)
def test_oneshot_gap_shrinks_with_size(
    small: tuple[float, float], large: tuple[float, float], expected: str
) -> None:
    # The iid rows of oneshot_frame have the gap growing: reading them would reverse the first case.
    assert verdict(with_(oneshot=oneshot_frame(small, large)), "oneshot-gap-shrinks") == expected


def test_oneshot_single_seed_and_single_size_are_inconclusive() -> None:
    assert verdict(with_(oneshot=oneshot_frame(n=1)), "oneshot-matches") == INCONCLUSIVE
    one_size = oneshot_frame()
    one_size = one_size[one_size["model"] == "smollm2-135m"]
    got = row(with_(oneshot=one_size), "oneshot-gap-shrinks")
    assert got["verdict"] == INCONCLUSIVE and "only one model size" in got["reason"]


# --------------------------------------------------------------------------------------------------
# missing evidence


@pytest.mark.parametrize(
    ("key", "field", "named"),
    [
        ("feedsign-byzantine", "byzantine", "Byzantine study"),
        ("feedsign-heterogeneity", "heterogeneity", "heterogeneity study"),
        ("ferret-rounds", "to_target", "rounds-to-target study"),
        ("ferret-compute-6x", "cost", "cost study"),
        ("oneshot-matches", "oneshot", "one-shot model-size study"),
        ("oneshot-gap-shrinks", "oneshot", "one-shot model-size study"),
    ],
)
def test_missing_study_is_inconclusive_and_named(key: str, field: str, named: str) -> None:
    got = row(with_(**{field: None}), key)
    assert got["verdict"] == INCONCLUSIVE
    assert named in got["reason"] and "this config has no" in got["reason"]


def test_missing_or_failed_method_is_inconclusive_and_named() -> None:
    main = main_frame()
    got = row(with_(main=main[main["method"] != "fedkseed-pro"]), "pro-vs-fedkseed")
    assert got["verdict"] == INCONCLUSIVE and "fedkseed-pro" in got["reason"]
    comm = comm_frame()
    got = row(with_(comm=comm[comm["method"] != "zo-fedsgd"]), "feedsign-uplink-1/64")
    assert got["verdict"] == INCONCLUSIVE and "zo-fedsgd" in got["reason"]
    got = row(with_(main=main_frame(zo_fedsgd=(math.nan, math.nan, 0))), "feedsign-non-iid")
    assert got["verdict"] == INCONCLUSIVE and "diverged or failed" in got["reason"]


def test_two_groups_of_one_method_are_not_averaged() -> None:
    main = pd.concat([main_frame(), pd.DataFrame([grp("fedavg", 0.50, model="other")])], ignore_index=True)
    got = row(with_(main=main), "ferret-vs-fedavg")
    assert got["verdict"] == INCONCLUSIVE and "model" in got["reason"]


# --------------------------------------------------------------------------------------------------
# writing


def test_write_claims_csv_and_markdown(tmp_path: Path) -> None:
    table = claims_table(reference())
    csv, md = tmp_path / "out" / "claims.csv", tmp_path / "out" / "claims.md"
    write_claims(table, csv, md)
    pd.testing.assert_frame_equal(pd.read_csv(csv), table)
    text = md.read_text()
    assert text.splitlines()[0].replace(" ", "") == "|paper|claim|evidence|verdict|reason|"
    assert len(text.splitlines()) == 2 + len(KEYS)
    assert sorted(p.name for p in csv.parent.iterdir()) == ["claims.csv", "claims.md"]  # no temp files


@pytest.mark.parametrize(("gain", "expected"), [(0.02, INCONCLUSIVE), (0.03, HOLDS)])
def test_a_method_that_does_not_learn_proves_no_robustness(gain: float, expected: str) -> None:
    # FeedSign's gain over the pretrained model at the least skewed split: 2 se = 2 * 0.02 / sqrt(2)
    # = 0.0283. Below it FeedSign does not learn, and "heterogeneity costs it nothing" is vacuous.
    het = hetero_frame()
    het["gain_mean"] = 0.2
    het["gain_sd"] = 0.02
    het.loc[(het["method"] == "feedsign") & het["alpha"].map(math.isinf), "gain_mean"] = gain
    got = row(with_(heterogeneity=het), "feedsign-heterogeneity")
    assert got["verdict"] == expected
    if expected == INCONCLUSIVE:
        assert "does not learn" in got["reason"]


def test_the_claims_read_the_largest_model_of_a_main_study_over_sizes() -> None:
    main = pd.DataFrame({"model": ["m:1L", "m", "m:3L", "m"], "parameters": [13.8e6, 22.7e6, 17.4e6, 22.7e6]})
    assert largest_model(main) == "m"
    assert largest_model(pd.DataFrame({"model": ["only"]})) == "only"
    with pytest.raises(ValueError, match="parameters"):
        largest_model(pd.DataFrame({"model": ["a", "b"]}))


def test_read_evidence_cuts_the_main_tables_to_the_largest_model(tmp_path: Path) -> None:
    ref = reference()
    paths = {}
    for name in ("main", "comm", "cost", "to_target", "oneshot"):
        frame = getattr(ref, name)
        if name != "oneshot":  # a smaller model in every main table: the claims must not read it
            frame = frame.assign(model="smollm2-135m", parameters=float(D))
            frame = pd.concat([frame, frame.assign(model="tiny", parameters=1e7, final_mean=0.1)])
        paths[name] = tmp_path / f"{name}.csv"
        frame.to_csv(paths[name], index=False)
    ev, model = read_evidence(paths)
    assert model == "smollm2-135m"
    assert set(ev.main["model"]) == set(ev.comm["model"]) == set(ev.cost["model"]) == {"smollm2-135m"}
    assert ev.heterogeneity is None and ev.byzantine is None and ev.oneshot is not None
    # The same verdicts as from the frames themselves, except where a study was left out.
    got = claims_table(ev).set_index("claim")["verdict"]
    want = claims_table(dataclasses.replace(ref, heterogeneity=None, byzantine=None)).set_index("claim")[
        "verdict"
    ]
    pd.testing.assert_series_equal(got, want)
    with pytest.raises(ValueError, match="no evidence is called"):
        read_evidence({**paths, "typo": paths["main"]})
