"""The smoke workflow (config/smoke.yaml), run once per test session through the real `snakemake`
command line; the tests in this folder read what it wrote."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, run_workflow

from zofo.grid import study

SMOKE = ROOT / "config" / "smoke.yaml"


@dataclass(frozen=True)
class Smoke:
    """A finished smoke workflow: its folders, its config and the runs that config declares."""

    workdir: Path
    results: Path
    figures: Path
    config: dict[str, Any]
    runs: dict[str, dict[str, Any]]  # run folder -> config mapping, registered methods (rule run)
    rule_runs: dict[str, dict[str, Any]]  # run folder -> config mapping, methods written as rules
    members: dict[str, list[str]]  # study -> its run folders

    def run_folder(self, path: str) -> Path:
        return self.results / "runs" / path

    def methods(self, name: str) -> set[str]:
        """The methods whose runs study ``name`` holds (the main study's include the rule methods)."""
        return {path.split("/", 1)[0] for path in self.members[name]}


@pytest.fixture(scope="session")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Smoke:
    """`snakemake --cores 2 --configfile config/smoke.yaml` in a scratch folder, once."""
    workdir = tmp_path_factory.mktemp("smoke")
    results, figures = workdir / "results", workdir / "figures"
    run_workflow(workdir, SMOKE, "--config", f"results_dir={results}", f"figures_dir={figures}")
    config = yaml.safe_load(SMOKE.read_text())
    runs, members = study.expand(config)
    return Smoke(workdir, results, figures, config, runs, study.rule_runs(config), members)


@pytest.fixture(scope="session")
def smoke_report(smoke: Smoke) -> Path:
    """`snakemake --report report.html` over the finished smoke workflow, as the README gives it."""
    report = smoke.workdir / "report.html"
    run_workflow(
        smoke.workdir,
        SMOKE,
        "--config",
        f"results_dir={smoke.results}",
        f"figures_dir={smoke.figures}",
        "--report",
        str(report),
        cores=None,
    )
    return report


def smoke_with(tmp_path: Path, **top: Any) -> Path:
    """config/smoke.yaml with ``top`` laid over its top level (run_defaults and methods merged key by
    key), written to ``tmp_path``, its results there too."""
    smoke = yaml.safe_load(SMOKE.read_text())
    where = {"results_dir": str(tmp_path / "results"), "figures_dir": str(tmp_path / "figures")}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(study.deep_merge(smoke, {**top, **where}), sort_keys=False))
    return path
