"""A run that diverges ends with status `diverged` and a complete run folder; the workflow goes on and
the table counts it while the figures mark it."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml
from conftest import ROOT, run_workflow, tiny_run_config

from zofo.core.config import RunConfig
from zofo.engine.loop import run

DIVERGING = {"lr": 1e12}  # ZO-FedSGD steps of 1e12 * p * z overflow the logits within two rounds


def test_diverging_run_writes_a_complete_folder_with_the_round(tmp_path: Path) -> None:
    cfg = RunConfig.from_dict(
        tiny_run_config("zo-fedsgd", DIVERGING, federation={"rounds": 6, "eval_every": 1})
    )
    out = run(cfg, tmp_path / "run", progress=False)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["status"] == "diverged"
    assert 1 <= meta["diverged_round"] <= 6 and str(meta["diverged_round"]) in meta["reason"]
    rows = [json.loads(x) for x in (out / "rounds.jsonl").read_text().splitlines() if x.strip()]
    assert rows and rows[0]["round"] == 0  # what was measured before divergence is kept


def test_workflow_goes_on_past_a_diverged_run(tmp_path: Path) -> None:
    smoke = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    smoke.pop("studies", None)  # the main study alone: this test is about one diverging run in it
    smoke.pop("rule_methods", None)
    smoke.update(
        label="divergence",
        seeds=[0],
        grid={"partition.alpha": [0.5]},  # one cell: the smoke config's two sizes are not the point here
        results_dir=str(tmp_path / "results"),
        figures_dir=str(tmp_path / "figures"),
        methods={
            "feedsign": smoke["methods"]["feedsign"],
            "zo-fedsgd": {"method": {"params": DIVERGING}},
        },
    )
    config = tmp_path / "divergence.yaml"
    config.write_text(yaml.safe_dump(smoke))
    run_workflow(tmp_path, config)

    table = pd.read_csv(tmp_path / "results" / "tables" / "final_metric.csv").set_index("method")
    assert (table.loc["zo-fedsgd", "n_diverged"], table.loc["zo-fedsgd", "n_seeds"]) == (1, 0)
    assert (table.loc["feedsign", "n_diverged"], table.loc["feedsign", "n_seeds"]) == (0, 1)
    for name in ("convergence_round.png", "convergence_bits.png"):
        assert (tmp_path / "figures" / name).stat().st_size > 5000
    log = (tmp_path / "results" / "logs" / "figures.log").read_text()
    assert "marked diverged: zo-fedsgd seed 0" in log
