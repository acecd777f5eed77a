"""`zofo check` and ``verify_runs``: each way a run folder can lie to a table (truncated, NaN, stale
config, edited rows, a bad line, a forged hash, bits off the formula) is caught and named, and the
committed results pass."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, TINY_RUN, WORKFLOW_ENV

from zofo import cli
from zofo.analysis.verify import declared_runs, find_runs, verify_run, verify_runs
from zofo.core.config import RunConfig
from zofo.engine.loop import run

# A workflow config declaring one run: FeedSign on tiny-llama, 3 rounds, a row every round.
WORKFLOW: dict[str, Any] = {
    "label": "verify",
    "threads_per_run": 1,
    "seeds": [0],
    "alphas": [0.5],
    "run_defaults": {k: v for k, v in TINY_RUN.items() if k not in ("seed", "threads")}
    | {"federation": {"rounds": 3, "batch_size": 2, "eval_every": 1}},
    "methods": {"feedsign": {"method": {"params": {"lr": 1e-3}}}},
}
RUN = "feedsign/alpha0.5/seed0"


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    """The runs/ folder of a results tree holding the one run WORKFLOW declares, as the engine wrote it."""
    runs = tmp_path_factory.mktemp("results") / "runs"
    for path, cfg in declared_runs(WORKFLOW, runs).items():
        run(RunConfig.from_dict(cfg), path, progress=False)
    return runs


@pytest.fixture
def runs(written: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(written, tmp_path / "results" / "runs"))


def rows_of(folder: Path) -> list[dict]:
    return [json.loads(x) for x in (folder / "rounds.jsonl").read_text().splitlines()]


def edit_rows(folder: Path, change: Callable[[list[dict]], list[dict]], keep_digest: bool = True) -> None:
    """Rewrite rounds.jsonl as the writer formats it; ``keep_digest=False`` also drops meta.json's
    digest, as a run written before digests were recorded has none (the other checks must stand alone)."""
    rows = change(rows_of(folder))
    (folder / "rounds.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    if not keep_digest:
        edit_meta(folder, lambda m: {k: v for k, v in m.items() if k != "rounds_sha256"})


def edit_meta(folder: Path, change: Callable[[dict], dict]) -> None:
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps(change(meta), indent=2, sort_keys=True))


def checks(problems: list) -> set[str]:
    return {p.check for p in problems}


def test_a_run_as_written_passes_every_check_and_its_declaration(runs: Path) -> None:
    assert verify_runs(find_runs(runs), declared_runs(WORKFLOW, runs)) == []


def test_a_truncated_run_marked_ok_is_caught(runs: Path) -> None:
    folder = runs / RUN
    edit_rows(folder, lambda rows: rows[:-1], keep_digest=False)
    problems = verify_run(folder)
    assert checks(problems) == {"complete"}
    assert "status ok but no rows for rounds [3] (final round 3, 3 rows)" in problems[0].message


def test_a_nan_final_metric_is_caught(runs: Path) -> None:
    folder = runs / RUN
    edit_rows(folder, lambda rows: [*rows[:-1], {**rows[-1], "metric": float("nan")}], keep_digest=False)
    assert "NaN" in (folder / "rounds.jsonl").read_text()  # as json writes a float nan
    problems = verify_run(folder)
    assert checks(problems) == {"final"}
    assert problems[0].message == "final metric (round 3) is nan"


def test_a_stale_config_is_caught_against_the_workflow_declaration(runs: Path) -> None:
    newer = {**WORKFLOW, "methods": {"feedsign": {"method": {"params": {"lr": 3e-3}}}}}
    problems = verify_runs(find_runs(runs), declared_runs(newer, runs))
    assert checks(problems) == {"declared"}
    assert "method.params.lr (recorded 0.001, declared 0.003)" in problems[0].message
    assert problems[0].run_dir == str(runs / RUN)


def test_an_edited_rounds_file_is_caught_by_its_digest(runs: Path) -> None:
    folder = runs / RUN
    # a plausible edit that no other check can see: a better metric in a middle row
    edit_rows(folder, lambda rows: [*rows[:1], {**rows[1], "metric": rows[1]["metric"] + 0.125}, *rows[2:]])
    problems = verify_run(folder)
    assert checks(problems) == {"digest"}
    assert "rounds.jsonl changed after the run wrote it" in problems[0].message


def test_a_cut_line_names_the_file_and_line(runs: Path) -> None:
    folder = runs / RUN
    text = (folder / "rounds.jsonl").read_text()
    (folder / "rounds.jsonl").write_text(text[: len(text) - 40])  # a copy cut off mid-row
    problems = [p for p in verify_run(folder) if p.check == "files"]
    assert len(problems) == 1 and problems[0].message.startswith(
        f"{folder / 'rounds.jsonl'} line 4: not JSON ("
    )


def test_a_recorded_config_edited_under_its_hash_is_caught(runs: Path) -> None:
    folder = runs / RUN

    def relabel(meta: dict) -> dict:
        meta["config"]["method"]["params"]["lr"] = 0.01
        return meta

    edit_meta(folder, relabel)
    problems = verify_run(folder)
    assert checks(problems) == {"hash"}
    assert "is not the hash of the recorded config" in problems[0].message


def test_bits_off_the_formula_are_caught(runs: Path) -> None:
    folder = runs / RUN
    edit_meta(folder, lambda m: {**m, "formula_bits": {"uplink": 2, "downlink": 1}})
    problems = verify_run(folder)
    assert checks(problems) == {"bits"}
    # FeedSign: 3 clients a round, one row a round
    assert "row 2 (round 1): bits_up 3, the formula gives 2 x 3 clients x 1 rounds = 6" in problems[0].message


def test_catch_up_in_a_run_where_every_client_takes_part_in_every_round_is_caught(runs: Path) -> None:
    folder = runs / RUN

    def add_catch_up(rows: list[dict]) -> list[dict]:
        # 5 bits more downlink in round 2, marked as catch-up, the cumulative counts kept consistent.
        rows[2] = {**rows[2], "bits_down": rows[2]["bits_down"] + 5, "bits_catch_up": 5}
        return [*rows[:2], *({**r, "bits_down_cum": r["bits_down_cum"] + 5} for r in rows[2:])]

    edit_rows(folder, add_catch_up, keep_digest=False)
    problems = verify_run(folder)
    assert checks(problems) == {"bits"}
    assert problems[0].message == "row 3 (round 2): bits_catch_up 5 with every client in every round"


def test_a_catch_up_total_the_rows_do_not_hold_is_caught(runs: Path) -> None:
    # FedKSeed reports its own total (describe); the rows must hold exactly that many catch-up bits.
    folder = runs / RUN
    edit_meta(folder, lambda m: {**m, "describe": {**m["describe"], "catch_up_bits_down": 32}})
    problems = verify_run(folder)
    assert checks(problems) == {"bits"}
    assert problems[0].message == "the method counted 32 catch-up bits down, the rows' bits_catch_up sum to 0"
    edit_rows(
        folder, lambda rows: [{k: v for k, v in r.items() if k != "bits_catch_up"} for r in rows], False
    )
    assert verify_run(folder)[0].message.endswith("sum to 0 (the rows predate the column)")


def test_cumulative_counts_that_do_not_add_up_are_caught(runs: Path) -> None:
    folder = runs / RUN
    edit_rows(folder, lambda rows: [*rows[:2], {**rows[2], "bits_up_cum": 0}, *rows[3:]], keep_digest=False)
    problems = verify_run(folder)
    assert checks(problems) == {"rows"}
    assert "row 3 (round 2): bits_up_cum 0, but the rows' bits_up sum to 6" in problems[0].message


def test_a_row_of_another_run_is_caught(runs: Path) -> None:
    folder = runs / RUN
    edit_rows(
        folder, lambda rows: [*rows[:3], {**rows[3], "seed": 1, "config_hash": "0123abcd"}], keep_digest=False
    )
    problems = verify_run(folder)
    assert checks(problems) == {"rows"}
    assert {p.message for p in problems} == {
        "rows of another config (config hash 0123abcd)",
        "rows of seed 1 in a run of seed 0",
    }


def test_a_run_written_by_a_workflow_rule_is_held_to_its_own_hash_and_schedule(runs: Path) -> None:
    folder = runs / RUN

    def by_a_rule(meta: dict) -> dict:
        # a rule's own hash scheme and its own rows (rounds 0 and 1 of a 3-round config)
        meta["method"]["written_by"] = "workflow rule local_only"
        return {**meta, "config_hash": "its-own-hash", "rounds_sha256": None}

    edit_meta(folder, by_a_rule)
    edit_rows(folder, lambda rows: [{**r, "config_hash": "its-own-hash"} for r in rows[:2]])
    assert verify_run(folder) == []
    edit_rows(folder, lambda rows: [*rows[:1], {**rows[1], "metric": None}])
    assert [p.message for p in verify_run(folder)] == ["final metric (round 1) is None"]


def test_a_run_left_running_says_whether_a_writer_still_holds_it(runs: Path) -> None:
    folder = runs / RUN
    edit_meta(folder, lambda m: {**m, "status": "running"})
    assert [p.message for p in verify_run(folder)] == [
        "status running (no process writes it: stopped or killed; the same run command resumes it)"
    ]
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        assert [p.message for p in verify_run(folder)] == ["status running (a live process holds its lock)"]
    finally:
        os.close(fd)


def test_missing_files_and_missing_runs_are_caught(runs: Path) -> None:
    (runs / RUN / "meta.json").unlink()
    declared = declared_runs({**WORKFLOW, "seeds": [0, 1]}, runs)
    problems = verify_runs(find_runs(runs), declared)
    assert [(p.run_dir, p.message) for p in problems] == [
        (str(runs / RUN), "no meta.json"),
        (str(runs / "feedsign/alpha0.5/seed1"), "declared by the workflow but not written: no run folder"),
    ]


def test_the_command_prints_one_line_per_bad_run_and_exits_1(runs: Path, tmp_path: Path, capsys) -> None:
    good = runs / "feedsign/alpha0.5/seed1"
    shutil.copytree(runs / RUN, good)
    edit_meta(good, lambda m: {**m, "config": {**m["config"], "seed": 1}})  # a second, bad run
    edit_rows(runs / RUN, lambda rows: rows[:-1])
    config = tmp_path / "workflow.yaml"
    config.write_text(yaml.safe_dump(WORKFLOW))
    assert cli.main(["check", str(runs.parent), "--config", str(config)]) == 1
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{runs / RUN}: complete: status ok but no rows for rounds [3]")
    assert "; digest: rounds.jsonl changed after the run wrote it" in lines[0]
    assert lines[1].startswith(f"{good}: rows: rows of seed 0 in a run of seed 1; hash: config hash ")
    assert "not declared" not in out and "1 run folders that" in err  # seed 1 is not in the workflow
    assert f"zofo check: {runs}: 2 run folders against {config}, 2 bad" in err

    assert cli.main(["check", str(runs), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert (report["runs"], report["bad_runs"]) == (2, 2)
    assert {p["run_dir"] for p in report["problems"]} == {str(runs / RUN), str(good)}


def test_the_committed_results_pass_against_the_default_configs() -> None:
    for results, config in [("results", "config.yaml"), ("results/llm", "llm.yaml")]:
        runs = ROOT / results / "runs"
        workflow = yaml.safe_load((ROOT / "config" / config).read_text())
        found = find_runs(runs)
        assert len(found) > 10
        problems = verify_runs(found, declared_runs(workflow, runs))
        assert problems == [], "\n".join(f"{p.run_dir}: {p.check}: {p.message}" for p in problems[:10])


def test_the_verifier_imports_neither_torch_nor_pandas() -> None:
    code = "import sys, zofo.analysis.verify; print(sorted({'torch', 'pandas'} & set(sys.modules)))"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=WORKFLOW_ENV, check=True
    )
    assert proc.stdout.strip() == "[]"
