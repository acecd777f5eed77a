"""Run folders are guarded: `zofo run` never overwrites a finished run or a run of another config, two
writers never share a folder, a resumed run never shortens what is on disk, and what goes wrong (a full
disk, an unwritable path, a failed workflow job) ends in one clear message with nothing finished lost."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, WORKFLOW_ENV, read_rows, tiny_run_config

from zofo import cli
from zofo.analysis.verify import verify_run
from zofo.core.config import RunConfig
from zofo.core.errors import ZofoError
from zofo.core.registry import METHODS
from zofo.engine.loop import CHECKPOINT, run
from zofo.engine.record import RunFolder, RunWriter

SETTING = tiny_run_config("feedsign", {"lr": 1e-3}, federation={"rounds": 3, "eval_every": 1})
OTHER = tiny_run_config("feedsign", {"lr": 2e-3}, federation={"rounds": 3, "eval_every": 1})


def snapshot(folder: Path) -> dict[str, bytes]:
    """The folder's results, byte for byte (a lock file is not a result)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """One finished run of SETTING; every test works on its own copy."""
    return run(RunConfig.from_dict(SETTING), tmp_path_factory.mktemp("finished") / "run", progress=False)


@pytest.fixture
def folder(finished: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(finished, tmp_path / "run"))


def write_config(tmp_path: Path, data: dict, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def stop_aggregate_in_round(monkeypatch, name: str, round_idx: int, error: BaseException) -> None:
    cls = METHODS.get(name)
    aggregate = cls.aggregate

    def stopping(self, r, payloads):
        if r == round_idx:
            raise error
        return aggregate(self, r, payloads)

    monkeypatch.setattr(cls, "aggregate", stopping)


# ---- refused: nothing on disk changes ----------------------------------------------------------------


def test_rerunning_a_finished_run_is_refused_and_leaves_it_whole(
    folder: Path, tmp_path: Path, capsys
) -> None:
    before = snapshot(folder)
    code = cli.main(["run", str(write_config(tmp_path, SETTING)), "--out", str(folder), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    meta = json.loads(before["meta.json"])
    assert (
        f"{folder} holds a finished run of this config (config hash {meta['config_hash']}, status ok)" in err
    )
    assert "already finished; pass --restart" in err
    assert snapshot(folder) == before


def test_zofo_run_restart_replaces_a_finished_run_of_another_config(
    folder: Path, tmp_path: Path, capsys
) -> None:
    """What the refusal tells the user to do, through the command line: --restart starts over."""
    old = json.loads((folder / "meta.json").read_text())
    code = cli.main(["run", str(write_config(tmp_path, OTHER)), "--out", str(folder), "--quiet", "--restart"])
    assert code == 0, capsys.readouterr().err
    meta = json.loads((folder / "meta.json").read_text())
    assert (
        meta["status"] == "ok"
        and meta["config_hash"] == RunConfig.from_dict(OTHER).hash() != old["config_hash"]
    )
    rows = read_rows(folder)
    assert [r["round"] for r in rows] == [0, 1, 2, 3]
    assert {r["config_hash"] for r in rows} == {meta["config_hash"]}


def test_another_config_into_a_finished_run_is_refused_naming_both_hashes(folder: Path) -> None:
    before = snapshot(folder)
    old = json.loads(before["meta.json"])["config_hash"]
    new = RunConfig.from_dict(OTHER)
    with pytest.raises(ZofoError) as e:
        run(new, folder, progress=False)
    msg = str(e.value)
    assert str(folder) in msg and f"config hash {old}, status ok" in msg and new.hash() in msg
    assert "--restart" in msg
    assert snapshot(folder) == before


def test_another_config_into_an_unfinished_run_is_refused(folder: Path) -> None:
    # a killed run of another config: status running, no process holding it
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**meta, "status": "running"}))
    before = snapshot(folder)
    with pytest.raises(ZofoError, match="a run of another config .* status running"):
        run(RunConfig.from_dict(OTHER), folder, progress=False)
    assert snapshot(folder) == before


def test_rows_of_another_config_without_a_meta_json_are_refused(folder: Path) -> None:
    (folder / "meta.json").unlink()  # as a workflow leaves it after deleting one output by hand
    before = snapshot(folder)
    old = read_rows(folder)[0]["config_hash"]
    with pytest.raises(ZofoError, match=f"rows of another config \\(config hash {old}\\)"):
        run(RunConfig.from_dict(OTHER), folder, progress=False)
    assert snapshot(folder) == before


def test_an_unreadable_meta_json_is_refused_not_overwritten(folder: Path) -> None:
    text = (folder / "meta.json").read_text()
    (folder / "meta.json").write_text(text[: len(text) // 2])  # cut mid-file
    before = snapshot(folder)
    with pytest.raises(ZofoError, match="meta.json that cannot be read .*whose run is unknown"):
        run(RunConfig.from_dict(SETTING), folder, progress=False)
    assert snapshot(folder) == before


# ---- one writer at a time --------------------------------------------------------------------------


def hold_in_child(folder: Path, *, then: str = "signal.pause()") -> subprocess.Popen:
    """Another process that takes ``folder`` (as a writer of a fresh run) and then runs ``then``."""
    code = (
        "import signal, sys; from zofo.engine.record import RunFolder; "
        f"f = RunFolder(sys.argv[1], 'h'); print('held', flush=True); {then}"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=WORKFLOW_ENV,
    )


def test_a_second_process_is_refused_while_the_first_holds_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    with RunFolder(folder, "h") as held:
        child = hold_in_child(folder)
        out, err = child.communicate(timeout=120)
        assert child.returncode != 0 and out == ""
        assert f"{folder} is being written by another process (pid {os.getpid()} on " in err
        # and this process's own writer, through `zofo run`'s entry point
        with pytest.raises(ZofoError, match="being written by another process"):
            run(RunConfig.from_dict(SETTING), folder, progress=False)
        assert held.kept_rows == 0 and sorted(p.name for p in folder.iterdir()) == [".lock"]


def test_a_killed_holder_leaves_no_stuck_lock(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    holder = hold_in_child(folder)
    try:
        assert holder.stdout.readline().strip() == "held", holder.stderr.read()
        with pytest.raises(ZofoError, match="being written by another process"):
            RunFolder(folder, "h")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    assert (folder / ".lock").exists()  # a killed holder cannot clean up
    # but the OS dropped its lock: the folder is free at once
    with RunFolder(folder, "h") as taken:
        assert taken.kept_rows == 0
    assert not (folder / ".lock").exists()


def test_restart_deletes_nothing_until_it_holds_the_folder(folder: Path) -> None:
    before = snapshot(folder)
    new = RunConfig.from_dict(OTHER)
    # another writer, as the OS sees one: an exclusive flock on the folder's lock file
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        with pytest.raises(ZofoError, match="being written by another process"):
            run(new, folder, progress=False, restart=True)
        assert snapshot(folder) == before
    finally:
        os.close(fd)
    out = run(new, folder, progress=False, restart=True)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["config_hash"] == new.hash() and meta["status"] == "ok"
    assert meta["config"]["method"]["params"]["lr"] == 2e-3
    assert [r["round"] for r in read_rows(out)] == [0, 1, 2, 3]


# ---- resuming loses nothing; ending deletes the checkpoint, an interruption keeps it -----------------


def test_retrying_never_shortens_the_rows_on_disk(tmp_path: Path, monkeypatch, capsys) -> None:
    cfg = RunConfig.from_dict(SETTING)
    out = tmp_path / "run"
    stop_aggregate_in_round(monkeypatch, "feedsign", 3, RuntimeError("server crashed"))
    with pytest.raises(RuntimeError):
        run(cfg, out, progress=False)
    meta = json.loads((out / "meta.json").read_text())
    assert (meta["status"], meta["reason"]) == ("failed", "RuntimeError: server crashed")
    # the reason reaches stderr too, which a workflow job's log keeps when its outputs are deleted
    assert f"zofo: {out}: failed: RuntimeError: server crashed" in capsys.readouterr().err
    assert not (out / CHECKPOINT).exists()  # a failed run cannot be resumed: it starts over
    assert [r["round"] for r in read_rows(out)] == [0, 1, 2]

    # The retry starts from round 0 and is interrupted in round 2: the failed attempt's three rows stay.
    stop_aggregate_in_round(monkeypatch, "feedsign", 2, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        run(cfg, out, progress=False)
    assert json.loads((out / "meta.json").read_text())["status"] == "interrupted"
    assert [r["round"] for r in read_rows(out)] == [0, 1, 2]
    assert (out / CHECKPOINT).exists()  # an interruption keeps it

    monkeypatch.undo()
    run(cfg, out, progress=False)
    meta = json.loads((out / "meta.json").read_text())
    assert (meta["status"], meta["resumed_from_round"]) == ("ok", 1)
    assert [r["round"] for r in read_rows(out)] == [0, 1, 2, 3]
    assert verify_run(out) == []


def test_a_diverged_run_keeps_no_checkpoint(tmp_path: Path) -> None:
    cfg = tiny_run_config("zo-fedsgd", {"lr": 1e12}, federation={"rounds": 6, "eval_every": 1})
    out = run(RunConfig.from_dict(cfg), tmp_path / "run", progress=False)
    assert json.loads((out / "meta.json").read_text())["status"] == "diverged"
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "rounds.jsonl"]
    assert verify_run(out) == []  # a divergence is a result: its rows are complete up to it


def test_temporary_files_of_interrupted_writes_are_removed(folder: Path, capsys) -> None:
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**meta, "status": "interrupted"}))
    left = [".meta.json.k2x9a1", ".rounds.jsonl.0q7f3z", ".checkpoint.pt.u81mnc"]
    for name in left:
        (folder / name).write_text("half a file")
    (folder / ".notes.txt").write_text("not the writer's")
    with RunFolder(folder, meta["config_hash"]) as held:
        assert held.kept_rows == 4
    assert sorted(p.name for p in folder.iterdir()) == [".notes.txt", "meta.json", "rounds.jsonl"]
    assert "removed interrupted writes" in capsys.readouterr().err


# ---- a full disk, an unwritable path: one message --------------------------------------------------


def test_a_full_disk_gives_one_message_a_failed_meta_and_no_leftovers(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    out = tmp_path / "run"
    full = {"now": False}
    mkstemp, add_row = tempfile.mkstemp, RunWriter.add_row

    def no_space(*args, **kwargs):
        if full["now"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return mkstemp(*args, **kwargs)

    def filling(self, row):
        add_row(self, row)
        full["now"] = row["round"] == 1  # the disk fills once round 1's row is on it

    monkeypatch.setattr(tempfile, "mkstemp", no_space)
    monkeypatch.setattr(RunWriter, "add_row", filling)
    code = cli.main(["run", str(write_config(tmp_path, SETTING)), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err and err.count("zofo: error:") == 1
    assert f"zofo: error: cannot write {out / CHECKPOINT}: No space left on device" in err
    meta = json.loads((out / "meta.json").read_text())  # rewritten in place: no new file needed
    assert meta["status"] == "failed" and "No space left on device" in meta["reason"]
    assert [r["round"] for r in read_rows(out)] == [0, 1]  # what was written stays
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "rounds.jsonl"]


def test_an_unwritable_output_path_gives_one_message(tmp_path: Path, capsys) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    out = tmp_path / "a-file" / "run"
    code = cli.main(["run", str(write_config(tmp_path, SETTING)), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    # refused before anything is written, naming the path and why it cannot be a folder
    assert f"--out: got {str(out)!r}" in err and "is a file" in err


# ---- a failed workflow job keeps its error in its log ------------------------------------------------


def test_a_failed_workflow_job_writes_its_error_into_its_log(tmp_path: Path) -> None:
    smoke = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    for key in ("studies", "rule_methods"):
        smoke.pop(key, None)
    results = tmp_path / "results"
    smoke.update(
        label="fails",
        grid={"partition.alpha": [0.5]},
        results_dir=str(results),
        figures_dir=str(tmp_path / "figures"),
        # valid as a config, impossible once the data is split: a batch larger than any client's shard
        methods={"feedsign": {"federation": {"batch_size": 100000}, "method": {"params": {"lr": 1e-3}}}},
    )
    config = write_config(tmp_path, smoke, "fails.yaml")
    target = results / "runs" / "feedsign" / "alpha0.5" / "seed0" / "meta.json"
    cmd = [
        sys.executable, "-m", "snakemake", str(target), "--cores", "1",
        "--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp_path), "--configfile", str(config),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=WORKFLOW_ENV)
    assert proc.returncode != 0
    log = (results / "logs" / "runs" / "feedsign" / "alpha0.5" / "seed0.log").read_text()
    assert "Traceback (most recent call last)" in log
    assert "zofo: job failed: ConfigError: federation.batch_size: got 100000" in log
    assert "lost sys.stderr" not in proc.stderr
