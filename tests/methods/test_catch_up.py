"""A client that returns after missing rounds first downloads what it missed, and the run counts that
download in the round it returns: bits_down = the round's broadcasts + the catch-up, the catch-up alone
in bits_catch_up. The expected numbers are worked out here from the cohort schedule (which rounds each
client took part in) and each protocol's definition, never from the method's own bookkeeping:

- FeedSign: one vote bit per missed step;
- ZO-FedSGD: every missed round's (seed, scalar) pairs, 64 bits per client of that round;
- FedKSeed(-Pro): A_now - A_t, K fp32, once, whatever the number of missed rounds.

A client's first round is a return from w0 (round 0); in round 1 nobody has missed anything.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import SMALL, read_rows, tiny_run_config

from zofo.analysis.verify import verify_run
from zofo.core.config import RunConfig
from zofo.core.seeds import numpy_rng
from zofo.engine.loop import run, sample_cohort

CLIENTS, COHORT, ROUNDS, SEED = 4, 2, 6, 0
# Per client of a round of n clients: the broadcast (what the round's cohort receives).
BROADCAST: dict[str, Callable[[dict, int], int]] = {
    "feedsign": lambda p, n: 1,  # the vote
    "zo-fedsgd": lambda p, n: 64 * n,  # every client's uint32 seed and fp32 scalar
    "fedkseed": lambda p, n: 32 * p["K"],  # the K-scalar pool change
    "fedkseed-pro": lambda p, n: 32 * p["K"],
}
# Per returning client that missed m rounds' broadcasts.
CATCH_UP: dict[str, Callable[[int, dict], int]] = {
    "feedsign": lambda m, p: m,
    "zo-fedsgd": lambda m, p: 64 * COHORT * m,
    "fedkseed": lambda m, p: 32 * p["K"] if m else 0,
    "fedkseed-pro": lambda m, p: 32 * p["K"] if m else 0,
}
NAMES = list(BROADCAST)


def schedule() -> dict[int, list[int]]:
    """Round -> its cohort, as the engine samples it (a named child of the run seed per round)."""
    return {r: sample_cohort(CLIENTS, COHORT, numpy_rng(SEED, "cohort", r)) for r in range(1, ROUNDS + 1)}


def missed_by_round() -> dict[int, list[int]]:
    """Round -> how many rounds each of its clients missed since it last took part (0 for w0)."""
    last: dict[int, int] = {}
    out = {}
    for r, cohort in schedule().items():
        out[r] = [r - 1 - last.get(k, 0) for k in cohort]
        last.update(dict.fromkeys(cohort, r))
    return out


def partial_run(name: str, out: Path, eval_every: int = 1) -> Path:
    data = tiny_run_config(
        name,
        SMALL[name],
        seed=SEED,
        partition={"num_clients": CLIENTS},
        federation={"rounds": ROUNDS, "eval_every": eval_every, "clients_per_round": COHORT},
    )
    return run(RunConfig.from_dict(data), out, progress=False)


def test_the_schedule_has_returns_after_one_and_after_several_missed_rounds() -> None:
    # Without both, the tests below could not tell a catch-up of m rounds from one of a single round.
    missed = [m for ms in missed_by_round().values() for m in ms]
    assert 1 in missed and max(missed) >= 2


@pytest.fixture(scope="module")
def partial(tmp_path_factory) -> Callable[[str], Path]:
    """name -> the run folder of that method under partial participation (each run once per module)."""
    done: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in done:
            done[name] = partial_run(name, tmp_path_factory.mktemp(name) / "run")
        return done[name]

    return get


@pytest.mark.parametrize("name", NAMES)
def test_each_round_counts_its_broadcast_plus_what_its_returning_clients_missed(name, partial) -> None:
    out = partial(name)
    params = SMALL[name]
    rows = read_rows(out)
    missed = missed_by_round()
    assert [r["round"] for r in rows] == list(range(ROUNDS + 1))
    assert rows[0]["bits_catch_up"] == 0 and rows[0]["bits_down"] == 0
    for row in rows[1:]:
        catch_up = sum(CATCH_UP[name](m, params) for m in missed[row["round"]])
        assert row["bits_catch_up"] == catch_up, (name, row["round"])
        assert row["bits_down"] == COHORT * BROADCAST[name](params, COHORT) + catch_up, (name, row["round"])
    assert sum(r["bits_catch_up"] for r in rows) > 0
    assert rows[-1]["bits_down_cum"] == sum(r["bits_down"] for r in rows)


@pytest.mark.parametrize("name", ["fedkseed", "fedkseed-pro"])
def test_fedkseed_s_own_totals_are_the_rows(name, partial) -> None:
    out = partial(name)
    describe = json.loads((out / "meta.json").read_text())["describe"]
    returns = sum(1 for ms in missed_by_round().values() for m in ms if m)
    assert describe["catch_up_clients"] == returns
    assert describe["catch_up_bits_down"] == sum(r["bits_catch_up"] for r in read_rows(out))


@pytest.mark.parametrize("name", NAMES)
def test_zofo_check_holds_the_downlink_to_the_formula_plus_its_catch_up(name, partial, tmp_path) -> None:
    out = Path(shutil.copytree(partial(name), tmp_path / "run"))
    assert verify_run(out) == []
    # One bit of catch-up more than was downloaded: the broadcasts no longer add up to the formula.
    rows = read_rows(out)
    rows[3]["bits_catch_up"] += 1
    (out / "rounds.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    meta = json.loads((out / "meta.json").read_text())
    meta.pop("rounds_sha256", None)
    (out / "meta.json").write_text(json.dumps(meta))
    problems = verify_run(out)
    assert {p.check for p in problems} == {"bits"}
    assert "row 4 (round 3)" in problems[0].message and "bits_catch_up" in problems[0].message


def test_rows_of_several_rounds_sum_their_catch_up(tmp_path: Path) -> None:
    out = partial_run("zo-fedsgd", tmp_path / "run", eval_every=3)
    rows = read_rows(out)
    missed = missed_by_round()
    assert [r["round"] for r in rows] == [0, 3, 6]
    for row, rounds in zip(rows[1:], ([1, 2, 3], [4, 5, 6]), strict=True):
        catch_up = sum(64 * COHORT * m for r in rounds for m in missed[r])
        assert row["bits_catch_up"] == catch_up
        assert row["bits_down"] == 3 * COHORT * BROADCAST["zo-fedsgd"]({}, COHORT) + catch_up


@pytest.mark.parametrize("name", NAMES)
def test_full_participation_catches_up_on_nothing(name: str, tmp_path: Path) -> None:
    # The tiny config's 3 clients, all in every round.
    data = tiny_run_config(name, SMALL[name], federation={"rounds": 3, "eval_every": 1})
    rows = read_rows(run(RunConfig.from_dict(data), tmp_path / "run", progress=False))
    assert [r["bits_catch_up"] for r in rows] == [0, 0, 0, 0]
    assert [r["bits_down"] for r in rows[1:]] == [3 * BROADCAST[name](SMALL[name], 3)] * 3
