"""What `snakemake -n` plans (no job runs): every declared run once with its resources, GPU requests,
the Slurm profile, and a refusal that names a run folder no study declares."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from conftest import ROOT, WORKFLOW_ENV, dry_run, planned_runs

from zofo.grid import study

from .conftest import SMOKE, smoke_with

SLURM = ROOT / "workflow" / "profiles" / "slurm"
BASELINES = sorted((ROOT / "baselines").glob("*/config*.yaml"))


def test_slurm_profile_plans_every_run_with_its_resources(tmp_path: Path) -> None:
    """`snakemake --profile workflow/profiles/slurm -n`: the Slurm executor plugin loads, the profile
    parses, and every run of the smoke config is planned with the profile's per-rule requests."""
    profile = yaml.safe_load((SLURM / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    where = [f"results_dir={tmp_path / 'results'}", f"figures_dir={tmp_path / 'figures'}"]
    jobs = planned_runs(dry_run(tmp_path, SMOKE, "--profile", str(SLURM), "--config", *where))
    runs, _ = study.expand(yaml.safe_load(SMOKE.read_text()))
    assert set(jobs) == set(runs)
    want = profile["set-resources"]["run"]
    # the profile sets no thread count for runs: a run's threads (part of its identity) come from the
    # workflow config alone
    assert "run" not in (profile.get("set-threads") or {})
    for run, res in jobs.items():
        assert (res["runtime"], res["mem_mb"]) == (str(want["runtime"]), str(want["mem_mb"])), run


def test_gpu_runs_hold_one_gpu_each_and_cpu_runs_none(tmp_path: Path) -> None:
    """`snakemake -n --resources gpu=2`: every run whose device is cuda is planned with gpu=1 (so at most
    two run at once), every cpu run with gpu=0."""
    config = smoke_with(tmp_path, run_defaults={"device": "cuda"}, methods={"zo-fedsgd": {"device": "cpu"}})
    jobs = planned_runs(dry_run(tmp_path, config, "--cores", "4", "--resources", "gpu=2"))
    runs, _ = study.expand(yaml.safe_load(config.read_text()))
    assert set(jobs) == set(runs)
    cpu = {run for run in runs if run.startswith("zo-fedsgd/")}
    assert cpu and len(cpu) < len(runs)
    for run, res in jobs.items():
        assert res["gpu"] == ("0" if run in cpu else "1"), (run, res)
        assert "gpu_model" not in res


def test_slurm_profile_submits_gpu_runs_with_a_gpu(tmp_path: Path) -> None:
    """`snakemake --profile workflow/profiles/slurm -n` on GPU runs (`device: auto` scheduled as cuda,
    one GPU type): each run job carries gpu=1 and gpu_model, which the Slurm plugin turns into
    `--gpus=<model>:1`; a CPU run gets no GPU request."""
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    config = smoke_with(
        tmp_path,
        auto_device="cuda",
        gpu_model="h100",
        run_defaults={"device": "auto"},
        methods={"zo-fedsgd": {"device": "cpu"}},
    )
    jobs = planned_runs(dry_run(tmp_path, config, "--profile", str(SLURM)))
    assert jobs
    for run, res in jobs.items():
        # What the plugin reads of a job: its resources, integers as Snakemake hands them over.
        values = {k: int(v) if v.isdigit() else v for k, v in res.items()}
        resources = SimpleNamespace(**values, get=lambda k, d=None, v=values: v.get(k, d))
        gres = set_gres_string(SimpleNamespace(resources=resources))
        if run.startswith("zo-fedsgd/"):
            assert res["gpu"] == "0" and "gpu_model" not in res and gres == "", (run, res, gres)
        else:
            assert res["gpu"] == "1" and res["gpu_model"] == "h100" and gres == " --gpus=h100:1", (run, gres)


@pytest.mark.parametrize("path", BASELINES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_baseline_config_plans_one_gpu_per_run(path: Path, tmp_path: Path) -> None:
    """`snakemake -n --resources gpu=2 --configfile <config>`: the workflow accepts the config and plans
    every run it declares (all studies) with gpu=1, so two run at once, each on its own card."""
    where = [f"results_dir={tmp_path / 'results'}", f"figures_dir={tmp_path / 'figures'}"]
    plan = dry_run(tmp_path, path, "--cores", "4", "--resources", "gpu=2", "--config", *where)
    jobs = planned_runs(plan)
    runs, _ = study.expand(yaml.safe_load(path.read_text()))
    assert set(jobs) == set(runs)
    assert {res["gpu"] for res in jobs.values()} == {"1"}, jobs


def test_a_run_folder_no_study_declares_is_refused_by_name(tmp_path: Path) -> None:
    folder = "fedavg/alpha0.7/seed0"  # alpha 0.7 is in no grid of the smoke config
    target = tmp_path / "results" / "runs" / folder / "meta.json"
    cmd = [
        sys.executable, "-m", "snakemake", "-n", str(target), "--snakefile", str(ROOT / "Snakefile"),
        "--directory", str(tmp_path), "--configfile", str(SMOKE),
        "--config", f"results_dir={tmp_path / 'results'}", f"figures_dir={tmp_path / 'figures'}",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=WORKFLOW_ENV)
    assert proc.returncode != 0
    refusal = f"run folder {tmp_path / 'results'}/runs/{folder}: no study of this config declares it"
    out = proc.stdout + proc.stderr
    assert refusal in out, out[-3000:]


def test_the_model_catalog_plans_without_torch_or_transformers() -> None:
    # The workflow reads the packaged GGUF models from zofo.assets.catalog when it builds its DAG.
    code = "import sys, zofo.assets.catalog; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=WORKFLOW_ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "[]"


def test_the_workflow_is_lint_clean() -> None:
    # `snakemake --lint` exits 1 when it has anything to say about a rule.
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--lint",
            "--snakefile",
            str(ROOT / "Snakefile"),
            "-d",
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=WORKFLOW_ENV,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]


def test_a_workflow_config_with_a_key_given_twice_is_refused_when_the_dag_is_built(tmp_path: Path) -> None:
    config = tmp_path / "twice.yaml"
    config.write_text(SMOKE.read_text() + "\nseeds: [0, 1]\n")  # smoke.yaml gives seeds already
    cmd = [
        sys.executable, "-m", "snakemake", "-n", "--snakefile", str(ROOT / "Snakefile"),
        "--directory", str(tmp_path), "--configfile", str(config),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=WORKFLOW_ENV)
    out = proc.stdout + proc.stderr  # snakemake -n reports a workflow error on stdout
    assert proc.returncode != 0
    assert "seeds: got '[0, 1]'" in out and "given on line" in out
