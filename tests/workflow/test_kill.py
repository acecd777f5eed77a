"""A workflow killed with SIGKILL while it runs loses nothing it finished: rerun with
``--rerun-incomplete``, it keeps the runs that had ended (not run again) and its tables are those of an
uninterrupted workflow, timing columns aside."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml
from conftest import ROOT, WORKFLOW_ENV

from workflow.conftest import SMOKE

# Two runs of a few rounds: enough for one to finish while the other is under way.
SMALL = {
    "seeds": [0],
    "grid": {"partition.alpha": [0.5]},
    "methods": {
        "feedsign": {"method": {"params": {"lr": 1.0e-3}}},
        "fedavg": {"method": {"params": {"lr": 1.0e-3, "local_steps": 2}}},
    },
}
TARGET = "results/tables/final_metric.csv"
# Columns that measure this machine's speed and memory, not the run's numbers.
TIMING = ("seconds", "peak_", "started", "finished")


def small_config(folder: Path) -> Path:
    """config/smoke.yaml cut to SMALL, written into ``folder`` (the workflow's working directory)."""
    config = yaml.safe_load(SMOKE.read_text())
    for key in ("rule_methods", "studies"):
        config.pop(key, None)
    config.update(SMALL, results_dir="results", figures_dir="figures")  # under the working directory
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def workflow(workdir: Path, config: Path, *extra: str) -> None:
    """The tables of ``config`` through the real `snakemake` command line, one job at a time."""
    cmd = [
        sys.executable, "-m", "snakemake", TARGET, "--cores", "1", "--snakefile", str(ROOT / "Snakefile"),
        "--directory", str(workdir), "--configfile", str(config), *extra,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=540, env=WORKFLOW_ENV)
    assert proc.returncode == 0, proc.stderr[-4000:]


def killed_after_first_job(workdir: Path, config: Path) -> None:
    """Start the workflow and SIGKILL its whole process group as soon as Snakemake reports its first
    finished job (the next run is then starting or under way): Snakemake, its jobs and their Python."""
    cmd = [
        sys.executable, "-m", "snakemake", TARGET, "--cores", "1", "--snakefile", str(ROOT / "Snakefile"),
        "--directory", str(workdir), "--configfile", str(config),
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=WORKFLOW_ENV,
        start_new_session=True,
    )
    seen = []
    try:
        for line in proc.stderr:  # blocks on Snakemake's own output: no polling, no sleeping
            seen.append(line)
            if re.search(r"\b1 of \d+ steps", line):
                os.killpg(proc.pid, signal.SIGKILL)
                break
        else:
            raise AssertionError("the workflow ended before its first job finished:\n" + "".join(seen[-40:]))
    finally:
        proc.wait(timeout=300)
    assert proc.returncode == -signal.SIGKILL


def finished_runs(results: Path) -> dict[str, str]:
    """Run folder -> its finish time, for every run that had ended."""
    out = {}
    for meta in results.glob("runs/**/meta.json"):
        data = json.loads(meta.read_text())
        if data.get("status") == "ok":
            out[str(meta.parent.relative_to(results))] = data["finished"]
    return out


def numbers(csv: Path) -> pd.DataFrame:
    df = pd.read_csv(csv)
    return df[[c for c in df.columns if not any(t in c for t in TIMING)]]


def test_a_killed_workflow_reruns_to_the_tables_of_an_uninterrupted_one(tmp_path: Path) -> None:
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    reference.mkdir()
    killed.mkdir()
    workflow(reference, small_config(reference))

    config = small_config(killed)
    killed_after_first_job(killed, config)
    results = killed / "results"
    before = finished_runs(results)
    assert len(before) == 1, before  # one run had ended when the kill came; the other had not
    # What Snakemake asks after a kill: release its directory lock, then finish what was incomplete.
    workflow(killed, config, "--unlock")
    workflow(killed, config, "--rerun-incomplete")

    after = finished_runs(results)
    assert len(after) == 2
    for run, finished in before.items():
        assert after[run] == finished, f"{run} ran again after the kill"
    for table in ("final_metric.csv", "runs.csv"):
        pd.testing.assert_frame_equal(
            numbers(results / "tables" / table), numbers(reference / "results" / "tables" / table)
        )
