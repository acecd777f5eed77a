"""Runs survive interruption: a run stopped after a checkpoint resumes and ends with exactly the results
of an uninterrupted run (timing and memory columns aside), for every method, and after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import SMALL, tiny_run_config

from zofo.core.config import RunConfig
from zofo.core.registry import METHODS
from zofo.engine.loop import CHECKPOINT, run

MACHINE_COLUMNS = {"client_seconds", "server_seconds", "eval_seconds", "peak_rss_mb", "peak_device_mb"}


def rows(out: Path) -> list[dict]:
    lines = (out / "rounds.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k not in MACHINE_COLUMNS} for x in lines if x.strip()]


def run_interrupted_in_round_3(name: str, cfg: RunConfig, out: Path, monkeypatch) -> None:
    """Run until the server's aggregate of round 3 is interrupted, as Ctrl-C there would (a failure
    deletes the checkpoint; an interruption keeps it)."""
    cls = METHODS.get(name)
    aggregate = cls.aggregate

    def interrupted(self, round_idx, payloads):
        if round_idx == 3:
            raise KeyboardInterrupt
        return aggregate(self, round_idx, payloads)

    monkeypatch.setattr(cls, "aggregate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, out, progress=False)


@pytest.mark.parametrize("name", [m for m in METHODS.names() if METHODS.get(m).max_rounds is None])
def test_resume_after_interruption_equals_uninterrupted(name: str, tmp_path: Path, monkeypatch) -> None:
    # cohort 2 of 3 clients: FedKSeed's catch-up bookkeeping for absent clients is part of the state
    data = tiny_run_config(
        name,
        SMALL[name],
        federation={"rounds": 4, "eval_every": 1, "clients_per_round": 2},
    )
    cfg = RunConfig.from_dict(data)
    whole = run(cfg, tmp_path / "whole", progress=False)
    assert not (whole / CHECKPOINT).exists()  # a finished run keeps only its results

    aggregate = METHODS.get(name).aggregate
    run_interrupted_in_round_3(name, cfg, tmp_path / "cut", monkeypatch)
    assert json.loads((tmp_path / "cut" / "meta.json").read_text())["status"] == "interrupted"
    assert [r["round"] for r in rows(tmp_path / "cut")] == [0, 1, 2]
    monkeypatch.setattr(METHODS.get(name), "aggregate", aggregate)

    resumed = run(cfg, tmp_path / "cut", progress=False)
    meta = json.loads((resumed / "meta.json").read_text())
    assert meta["status"] == "ok" and meta["resumed_from_round"] == 2
    assert rows(resumed) == rows(whole)


def test_a_checkpoint_of_another_config_is_refused(tmp_path: Path) -> None:
    from zofo.core.errors import ZofoError

    cfg = RunConfig.from_dict(tiny_run_config("feedsign", {"lr": 1e-3}))
    out = tmp_path / "run"
    out.mkdir()
    run(cfg, tmp_path / "other", progress=False)
    import torch

    torch.save({"config_hash": "not-this-one", "round": 1}, out / CHECKPOINT)
    with pytest.raises(ZofoError, match="another configuration"):
        run(cfg, out, progress=False)


def test_sigkill_mid_run_then_rerun_gives_the_uninterrupted_results(tmp_path: Path) -> None:
    data = tiny_run_config(
        "fedavg", {"lr": 1e-3, "local_steps": 2}, federation={"rounds": 5, "eval_every": 1}
    )
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(data))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "zofo.cli", "run", str(cfg_path), "--quiet"]

    whole = tmp_path / "whole"
    subprocess.run([*cmd, "--out", str(whole)], check=True, env=env, capture_output=True, timeout=300)

    cut = tmp_path / "cut"
    proc = subprocess.Popen([*cmd, "--out", str(cut)], env=env, stderr=subprocess.PIPE, text=True)
    # The engine announces every checkpoint on stderr: kill the moment round 2's is on disk, while the
    # run is already working on round 3.
    for line in proc.stderr:
        if line.startswith("zofo: checkpoint at round 2"):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert (cut / CHECKPOINT).exists()

    done = subprocess.run([*cmd, "--out", str(cut)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming" in done.stderr
    assert rows(cut) == rows(whole)
    assert json.loads((cut / "meta.json").read_text())["status"] == "ok"


def test_fedkseed_checkpoints_hold_pool_changes_not_weights(tmp_path: Path, monkeypatch) -> None:
    """FedKSeed's global model is w0 plus its broadcasts, so its checkpoint is K scalars a round."""
    import torch

    data = tiny_run_config("fedkseed", SMALL["fedkseed"], federation={"rounds": 3, "eval_every": 1})
    cfg = RunConfig.from_dict(data)
    run_interrupted_in_round_3("fedkseed", cfg, tmp_path / "cut", monkeypatch)
    state = torch.load(tmp_path / "cut" / CHECKPOINT, weights_only=False)
    assert state["weights"] is None and state["round"] == 2
    assert [d.numel() for d in state["method"]["_deltas"]] == [SMALL["fedkseed"]["K"]] * 2
    model_bytes = sum(4 * p.numel() for p in load_model_params())
    assert (tmp_path / "cut" / CHECKPOINT).stat().st_size < model_bytes / 10


def load_model_params():
    from conftest import load_tiny_llama

    return list(load_tiny_llama().model.parameters())


def test_atomic_writes_leave_no_temporary_file_and_ordinary_permissions(tmp_path: Path) -> None:
    import os
    import stat

    from zofo.engine.record import atomic_write_text

    target = tmp_path / "rounds.jsonl"
    atomic_write_text(target, "one\n")
    atomic_write_text(target, "two\n")
    assert target.read_text() == "two\n"
    assert [p.name for p in tmp_path.iterdir()] == ["rounds.jsonl"], "a temporary file was left behind"
    mask = os.umask(0)
    os.umask(mask)
    # mkstemp's 0600 would hide results from every other user of a shared cluster file system
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask
