"""One run job outside the smoke workflow: what it takes from Snakemake rather than from the config."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from conftest import run_workflow

from .conftest import SMOKE


def test_a_run_computes_with_the_threads_its_job_gets(tmp_path: Path) -> None:
    # threads_per_run asks for 1; --set-threads gives the job 2, and the run records (and uses) 2.
    config = yaml.safe_load(SMOKE.read_text())
    config.update(
        results_dir=str(tmp_path / "results"),
        figures_dir=str(tmp_path / "figures"),
        grid={"partition.alpha": [0.5]},
        methods={"feedsign": {"federation": {"rounds": 1, "eval_every": 1}}},
    )
    for key in ("studies", "rule_methods"):
        config.pop(key)
    assert config["threads_per_run"] == 1
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    meta = tmp_path / "results" / "runs" / "feedsign" / "alpha0.5" / "seed0" / "meta.json"
    run_workflow(tmp_path, path, "--set-threads=run=2", str(meta))  # one value, then the target
    recorded = json.loads(meta.read_text())
    assert recorded["status"] == "ok" and recorded["config"]["threads"] == 2
