"""What importing a module loads: a run, ``zofo list`` and the workflow's DAG build import only what
they use. Each check runs in a fresh interpreter, whose ``sys.modules`` no other test has filled.

These are properties of the import graph, not timings: importing evaluate (for transformers' pipelines),
matplotlib or the bench at a module's top level makes every process that imports it pay for them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import WORKFLOW_ENV


def loaded_after(code: str, watched: set[str]) -> list[str]:
    """The ``watched`` modules in ``sys.modules`` once ``code`` has run in a new interpreter."""
    return snapshots(f"{code}\nsnapshot()", watched)[0]


def snapshots(code: str, watched: set[str]) -> list[list[str]]:
    """The ``watched`` modules in ``sys.modules`` at each ``snapshot()`` call of ``code``, run in a new
    interpreter."""
    script = (
        "import json, sys\n"
        f"def snapshot():\n    print(json.dumps(sorted({sorted(watched)!r} & sys.modules.keys())))\n"
        f"{code}\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=WORKFLOW_ENV, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("[")]


# Imported where they are used: evaluate for Rouge-L, plotting and tables by the analysis, the bench by
# `zofo bench`, peft by the LoRA method, scikit-learn by nothing the package runs.
NOT_FOR_A_RUN = {
    "evaluate",
    "transformers.pipelines",
    "sklearn",
    "matplotlib",
    "peft",
    "zofo.bench",
    "zofo.analysis",
}


@pytest.fixture(scope="module")
def classification_run() -> list[list[str]]:
    """What a classification run has loaded once its modules are imported, and once it has scored (one
    interpreter for both: its imports are most of the cost)."""
    code = """
import zofo.cli, zofo.engine.loop, zofo.engine.prepare, zofo.assets.objectives.classification
snapshot()
from zofo.assets.models import load_model
from zofo.assets.objectives import build_objective
from zofo.core.config import ModelConfig, TaskConfig
from zofo.core.registry import TASKS
cfg = TaskConfig(name="bbc-news", max_input_tokens=8)
task = TASKS.get("bbc-news")(cfg)
obj = build_objective(load_model(ModelConfig(name="tiny-bert")), task, cfg)
scores = obj.evaluate(obj.encode_split(task.splits["test"].select(range(4))))
assert 0 <= scores["metric"] <= 1, scores
snapshot()
"""
    found = snapshots(code, NOT_FOR_A_RUN)
    assert len(found) == 2
    return found


def test_a_runs_modules_import_nothing_a_run_does_not_use(classification_run: list[list[str]]) -> None:
    assert classification_run[0] == []


def test_a_classification_evaluation_scores_without_evaluate(classification_run: list[list[str]]) -> None:
    assert classification_run[1] == []


def test_listing_and_checking_a_config_load_no_data_model_or_bench_libraries() -> None:
    """`zofo list` and a RunConfig's name checks (what the workflow runs for every run while it builds
    its DAG) resolve every registered name. They import the methods, so torch, but no data, model,
    metric, table or plotting library."""
    code = """
import contextlib, io
from zofo.cli import main
from zofo.core.config import RunConfig
with contextlib.redirect_stdout(io.StringIO()):
    assert main(["list"]) == 0
RunConfig.from_dict({"model": {"name": "minilm-l6"}, "task": {"name": "bbc-news"},
                     "method": {"name": "feedsign"}, "byzantine": {"fraction": 0.2, "attack": "reversed"}})
"""
    watched = {"datasets", "pandas", "transformers", *NOT_FOR_A_RUN}
    assert loaded_after(code, watched) == []


def test_the_workflows_grid_and_config_modules_import_no_torch() -> None:
    # The Snakefile imports these first; a workflow that only plans (snakemake -n, --lint) needs no torch
    # for them.
    code = "import zofo.grid.study, zofo.core.config, zofo.core.errors"
    assert loaded_after(code, {"torch", "numpy", "datasets", "pandas"}) == []
