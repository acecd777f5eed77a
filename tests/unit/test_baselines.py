"""baselines/: every paper folder has the shared README sections, a well-formed reported.csv and
workflow configs that validate against the workflow schema and build a RunConfig for every run."""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path

import jsonschema
import pandas as pd
import pytest
import yaml

from zofo.core.config import RunConfig
from zofo.grid import study

ROOT = Path(__file__).resolve().parents[2]
BASELINES = ROOT / "baselines"
PAPERS = sorted(p.name for p in BASELINES.iterdir() if p.is_dir())
REPORTED_COLUMNS = ["paper", "table", "method", "model", "task", "metric", "value", "source_note"]
SCHEMA = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
CONFIGS = [p for paper in PAPERS for p in sorted((BASELINES / paper).glob("config*.yaml"))]
MINIS = [BASELINES / paper / "config-gpu-mini.yaml" for paper in PAPERS]


def headings(text: str) -> list[str]:
    """The level-2 section headings (``## ...``) of a markdown text, in order."""
    return re.findall(r"^## +(.+?)\s*$", text, flags=re.MULTILINE)


def test_the_papers_are_there_and_indexed() -> None:
    assert {"fedkseed", "feedsign", "ferret", "oneshot"} <= set(PAPERS)
    index = (BASELINES / "README.md").read_text()
    for paper in PAPERS:
        assert f"{paper}/" in index, f"baselines/README.md does not link {paper}/"


def test_template_has_the_sections() -> None:
    sections = headings((BASELINES / "TEMPLATE.md").read_text())
    assert sections == [
        "Paper",
        "What it claims",
        "Setting",
        "How zofo implements it",
        "Run at paper scale",
        "CPU miniature",
        "GPU miniature",
        "Expected results",
    ]


@pytest.mark.parametrize("paper", PAPERS)
def test_readme_follows_the_template(paper: str) -> None:
    template = headings((BASELINES / "TEMPLATE.md").read_text())
    readme = headings((BASELINES / paper / "README.md").read_text())
    missing = [h for h in template if h not in readme]
    assert not missing, f"baselines/{paper}/README.md lacks sections {missing}"
    # in the template's order
    assert [h for h in readme if h in template] == template


@pytest.mark.parametrize("paper", PAPERS)
def test_readme_names_its_configs(paper: str) -> None:
    text = (BASELINES / paper / "README.md").read_text()
    for cfg in sorted((BASELINES / paper).glob("config*.yaml")):
        assert f"snakemake --cores all --configfile baselines/{paper}/{cfg.name}" in text


@pytest.mark.parametrize("paper", PAPERS)
def test_reported_csv(paper: str) -> None:
    df = pd.read_csv(BASELINES / paper / "reported.csv")
    assert list(df.columns) == REPORTED_COLUMNS
    assert len(df) > 0
    assert pd.api.types.is_numeric_dtype(df["value"]), df["value"].tolist()
    assert df["value"].notna().all()
    assert (df["paper"] == paper).all()
    for col in ("table", "method", "metric", "source_note"):
        assert df[col].notna().all() and (df[col].astype(str).str.strip() != "").all(), col
    # one row per number: no (table, method, model, task, metric) twice
    key = ["table", "method", "model", "task", "metric"]
    assert not df.duplicated(key).any(), df[df.duplicated(key, keep=False)]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_config_validates_and_every_run_builds(path: Path) -> None:
    paper = path.parent.name
    config = yaml.safe_load(path.read_text())
    jsonschema.validate(config, SCHEMA)
    assert config["results_dir"].startswith(f"results/baselines/{paper}")
    assert config["figures_dir"].startswith(f"figures/baselines/{paper}")
    runs = study.expand_runs(config)
    cells = math.prod(len(values) for values in study.main_grid(config).values())
    assert len(runs) == len(config["methods"]) * cells * len(config["seeds"])
    for run in runs:
        cfg = RunConfig.from_dict(run)
        cfg.method_params()
        assert cfg.label == config["label"]
        # Every paper-scale config and miniature runs on a GPU, in a precision its comments justify.
        assert cfg.device == "cuda" and cfg.dtype in ("float32", "bfloat16", "float16"), path
    # The figure rule draws one setting per study: every run shares the model, task and partition.
    settings = {(r["model"]["name"], r["task"]["name"], r["partition"]["name"]) for r in runs}
    assert len(settings) == 1 and len(config["alphas"]) == 1, settings


@pytest.mark.parametrize("path", MINIS, ids=lambda p: p.parent.name)
def test_every_paper_has_a_gpu_miniature(path: Path) -> None:
    paper = path.parent.name
    text = path.read_text()
    config = yaml.safe_load(text)
    assert config["results_dir"] == f"results/baselines/{paper}/gpu-mini"
    assert config["figures_dir"] == f"figures/baselines/{paper}/gpu-mini"
    defaults = config["run_defaults"]
    assert defaults["device"] == "cuda" and defaults["zo"]["generator"] == "philox"
    header = text.split("\n\n", 1)[0]
    # Sized for one GPU, with the estimate written down.
    assert "at most 8 minutes" in header and "Sizing" in header, header
    # A hub model cannot load on a machine without a hub: the header says so. A model built from its
    # config would make every accuracy meaningless: such a miniature must say it reports cost only.
    if "/" in defaults["model"]["name"]:
        assert "model hub" in header, header
    if defaults["model"]["name"] in ("tiny-llama", "tiny-bert"):
        assert "cost only" in header, header


def test_results_folders_are_distinct() -> None:
    dirs = [yaml.safe_load(p.read_text())["results_dir"] for p in CONFIGS]
    assert len(set(dirs)) == len(dirs), dirs


# ---- zofo.grid.study, the expansion the workflow uses -----------------------------------------------


def test_deep_merge_merges_nested_and_replaces_leaves() -> None:
    base = {"a": {"x": 1, "y": [1, 2]}, "b": 1}
    out = study.deep_merge(base, {"a": {"y": [3]}, "c": None})
    assert out == {"a": {"x": 1, "y": [3]}, "b": 1, "c": None}
    assert base == {"a": {"x": 1, "y": [1, 2]}, "b": 1}  # not modified
    out["a"]["x"] = 9
    assert base["a"]["x"] == 1  # a copy, not a view


def test_expand_runs_matches_the_default_study() -> None:
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    axes = study.main_grid(config)
    cells = list(itertools.product(*axes.values()))
    runs = study.expand_runs(config)
    assert len(runs) == len(config["methods"]) * len(cells) * len(config["seeds"])
    expected = [(m, c, s) for m in config["methods"] for c in cells for s in config["seeds"]]
    for (m, cell, s), run in zip(expected, runs, strict=True):
        assert run["method"]["name"] == m and run["seed"] == s
        for key, value in zip(axes, cell, strict=True):
            section, leaf = key.split(".")
            if key == "partition.alpha" and value == "iid":
                assert run["partition"]["name"] == "iid"
            elif key == "partition.alpha":
                assert run["partition"]["alpha"] == float(value)
            else:
                assert run[section].get(leaf) == value, key  # null sets nothing
        assert run["threads"] == config["threads_per_run"] and run["label"] == config["label"]
        assert run["method"]["params"] == {
            **config["run_defaults"].get("method", {}).get("params", {}),
            **config["methods"][m]["method"]["params"],
        }


def test_no_placeholder_lines_in_baseline_readmes() -> None:
    import re

    for readme in sorted((Path(__file__).resolve().parents[2] / "baselines").glob("*/README.md")):
        bad = [line for line in readme.read_text().splitlines() if re.fullmatch(r"[A-Z_]{8,}", line.strip())]
        assert not bad, f"{readme}: placeholder lines {bad}"


def test_the_llm_config_validates_and_every_run_builds() -> None:
    # config/llm.yaml (the SmolLM2-135M study, README) is run with `snakemake --configfile`: the schema
    # and every run's RunConfig must accept it, and its runs land apart from the default's.
    config = yaml.safe_load((ROOT / "config" / "llm.yaml").read_text())
    jsonschema.validate(config, SCHEMA)
    runs, members = study.expand(config)
    assert len(runs) == len(config["methods"]) * len(config["alphas"]) * len(config["seeds"])
    for run in runs.values():
        cfg = RunConfig.from_dict(run)
        cfg.method_params()
        assert cfg.model.name == "smollm2-135m" and cfg.zo.fuse is False
    assert config["results_dir"] == "results/llm" and config["figures_dir"] == "figures/llm"
