"""zofo.grid.gpu_slots: which GPU a workflow job takes. Checked on the CPU: the cards are names in
CUDA_VISIBLE_DEVICES and the claims are file locks, taken from several processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT

from zofo.core.errors import ConfigError
from zofo.grid.gpu_slots import bind_job_gpu, gpus_for_device, lock_dir, try_claim, visible_gpus

ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}


@pytest.mark.parametrize(
    ("device", "auto_device", "gpus"),
    [
        ("cuda", "cpu", 1),
        ("cuda:3", "cpu", 1),
        ("cpu", "cuda", 0),
        ("mps", "cuda", 0),
        ("auto", "cpu", 0),
        ("auto", "cuda", 1),
    ],
)
def test_a_run_holds_a_gpu_when_its_device_is_a_cuda_card(device: str, auto_device: str, gpus: int) -> None:
    assert gpus_for_device(device, auto_device) == gpus


def test_bad_devices_are_named() -> None:
    allowed = r"auto, cpu, cuda, cuda:N \(N a GPU index\) or mps"
    with pytest.raises(ConfigError, match=rf"device: got 'gpu'; allowed: {allowed}"):
        gpus_for_device("gpu")
    with pytest.raises(ConfigError, match=r"auto_device: got 'mps'"):
        gpus_for_device("auto", "mps")


def test_visible_cards_come_from_the_environment_else_from_the_count() -> None:
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2, 5"}, count=lambda: 8) == ["2", "5"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}, count=lambda: 8) == []
    assert visible_gpus({}, count=lambda: 3) == ["0", "1", "2"]


def test_lock_folders_are_per_slurm_allocation(tmp_path: Path) -> None:
    # Two Slurm jobs on one node may each see their own card as "0": their locks must not meet.
    a = lock_dir(tmp_path, {"SLURM_JOB_ID": "11"})
    b = lock_dir(tmp_path, {"SLURM_JOB_ID": "12"})
    local = lock_dir(tmp_path, {})
    assert len({a, b, local}) == 3 and all(p.parent == tmp_path for p in (a, b, local))


HOLDER = textwrap.dedent(
    """
    import sys
    from zofo.grid.gpu_slots import try_claim
    slot = try_claim(sys.argv[1], sys.argv[2].split(","))
    print(slot.card, flush=True)
    sys.stdin.read()  # hold the card until the test closes our stdin
    """
)


def test_two_processes_take_two_cards_and_a_dead_process_frees_its_own(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path), "0,1"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        assert holder.stdout.readline().strip() == "0"
        mine = try_claim(tmp_path, ["0", "1"])
        assert mine is not None and mine.card == "1"
        # Both cards held (one by each process): nothing left to claim.
        assert try_claim(tmp_path, ["0", "1"]) is None
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    # The holder ended without releasing anything itself: the kernel dropped its lock.
    again = try_claim(tmp_path, ["0", "1"])
    assert again is not None and again.card == "0"
    mine.release()
    again.release()


def test_a_job_sees_only_its_card_or_none(tmp_path: Path) -> None:
    env = {"CUDA_VISIBLE_DEVICES": "4,7"}
    first = bind_job_gpu(1, "cuda", tmp_path, env)
    assert first is not None and env["CUDA_VISIBLE_DEVICES"] == "4"
    env2 = {"CUDA_VISIBLE_DEVICES": "4,7"}
    second = bind_job_gpu(1, "auto", tmp_path, env2)
    assert second is not None and env2["CUDA_VISIBLE_DEVICES"] == "7"
    # A job granted no GPU sees none, so `auto` cannot land on a card another job holds.
    cpu_env = {"CUDA_VISIBLE_DEVICES": "4,7"}
    assert bind_job_gpu(0, "auto", tmp_path, cpu_env) is None and cpu_env["CUDA_VISIBLE_DEVICES"] == ""
    # A card named in the config is left as it is.
    pinned = {"CUDA_VISIBLE_DEVICES": "4,7"}
    assert bind_job_gpu(1, "cuda:1", tmp_path, pinned) is None and pinned["CUDA_VISIBLE_DEVICES"] == "4,7"
    with pytest.raises(ConfigError, match=r"device: got 'cuda'; allowed: cpu, or a machine"):
        bind_job_gpu(1, "cuda", tmp_path, {}, count=lambda: 0)
    with pytest.raises(ConfigError, match=r"gpu: got 2"):
        bind_job_gpu(2, "cuda", tmp_path, {"CUDA_VISIBLE_DEVICES": "0,1"})
    first.release()
    second.release()


JOB = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from zofo.grid.gpu_slots import bind_job_gpu
    name, gpus, out = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    slot = bind_job_gpu(gpus, "cuda", "locks", os.environ)
    (out / f"{name}.card").write_text(os.environ["CUDA_VISIBLE_DEVICES"])
    # Barrier: end only once every job has its card, so the jobs must have run at the same time.
    for _ in range(600):
        if len(list(out.glob("*.card"))) == 2:
            break
        time.sleep(0.2)
    else:
        sys.exit(f"job {name}: the other job never started while this one held its card")
    (out / f"{name}.done").write_text("")
    """
)


def test_snakemake_runs_n_gpu_jobs_at_once_each_on_its_own_card(tmp_path: Path) -> None:
    # `--resources gpu=2` on a machine with two cards: Snakemake starts both gpu=1 jobs together and
    # each claims a different card, as the workflow's run rule does (workflow/scripts/run.py).
    (tmp_path / "job.py").write_text(JOB)
    (tmp_path / "out").mkdir()
    (tmp_path / "Snakefile").write_text(
        textwrap.dedent(
            f"""
            rule all:
                input: expand("out/{{name}}.done", name=["a", "b"])

            rule job:
                output: "out/{{name}}.done"
                resources: gpu=1
                shell: "{sys.executable} job.py {{wildcards.name}} {{resources.gpu}} out"
            """
        )
    )
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", "--resources", "gpu=2", "--quiet", "rules"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**ENV, "CUDA_VISIBLE_DEVICES": "0,1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    cards = sorted((tmp_path / "out" / f"{n}.card").read_text() for n in ("a", "b"))
    assert cards == ["0", "1"]
