"""The smoke workflow end to end through the real `snakemake` command line, in a scratch folder."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import yaml
from conftest import ROOT, dry_run, planned_runs, run_workflow


def test_smoke_workflow_produces_tables_and_figures(tmp_path: Path) -> None:
    results, figures = tmp_path / "results", tmp_path / "figures"
    run_workflow(
        tmp_path,
        ROOT / "config" / "smoke.yaml",
        "--config",
        f"results_dir={results}",
        f"figures_dir={figures}",
    )

    smoke = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    seeds = smoke["seeds"]
    # the registered methods and local-only, a method written as a workflow rule alone
    assert list(smoke["rule_methods"]) == ["local-only"]
    methods = sorted([*smoke["methods"], *smoke["rule_methods"]])
    table = pd.read_csv(results / "tables" / "final_metric.csv")
    # every method of the smoke config at both model sizes, each with every seed finished ok
    assert sorted(table["method"]) == sorted(methods * 2)
    assert set(table["model"]) == {"tiny-llama", "tiny-llama:1L"}
    assert table.groupby("model")["parameters"].nunique().eq(1).all() and table["parameters"].nunique() == 2
    assert (table["n_seeds"] == len(seeds)).all()
    assert (results / "tables" / "final_metric.md").read_text().count("|") > 10
    comm = pd.read_csv(results / "tables" / "communication.csv")
    assert sorted(comm["method"]) == sorted(methods * 2)
    series = (results / "logs" / "figures.log").read_text()
    assert f"series: {', '.join(methods)}" in series, series
    local = json.loads((results / "runs/local-only/alpha0.5/seed0/meta.json").read_text())
    assert local["status"] == "ok" and local["method"]["written_by"].startswith("workflow rule")
    assert len(local["per_client"]) == smoke["run_defaults"]["partition"]["num_clients"]
    assert (comm.set_index("method").loc["local-only", "bits_up_per_round"] == 0).all()
    # bits to a target: one target per model size
    to_target = pd.read_csv(results / "tables" / "bits_to_target.csv")
    assert to_target.groupby("model")["target"].nunique().eq(1).all() and to_target["model"].nunique() == 2
    for name in ("convergence_round", "convergence_bits", "communication", "cost"):
        for ext in ("png", "pdf"):
            out = figures / f"{name}.{ext}"
            assert out.stat().st_size > 5000, out
    # The study figures of every kind, each from its own study's runs.
    for study, name in [
        ("heterogeneity", "heterogeneity"),
        ("sensitivity-fedkseed-k", "sweep"),
        ("oneshot", "oneshot_gap"),
    ]:
        for ext in ("png", "pdf"):
            assert (figures / study / f"{name}.{ext}").stat().st_size > 5000, (study, name)
    # The swept K is a column of its study's table, one row per value; the iid cell is alpha = inf.
    sweep = pd.read_csv(results / "tables" / "sensitivity-fedkseed-k" / "final_metric.csv")
    assert sorted(sweep["method.params.K"]) == [8, 16]  # null: the method's own K, the main study's run
    het = pd.read_csv(results / "tables" / "heterogeneity" / "final_metric.csv")
    assert sorted(het["alpha"].astype(float)) == [0.5, 0.5, float("inf"), float("inf")]
    sizes = pd.read_csv(results / "tables" / "oneshot" / "final_metric.csv")
    assert set(sizes["model"]) == {"tiny-llama:1L", "tiny-llama"} and sizes["parameters"].nunique() == 2
    # The main table in LaTeX, the cost table, and the claims table: every claim with a verdict.
    assert "\\toprule" in (results / "tables" / "final_metric.tex").read_text()
    assert set(pd.read_csv(results / "tables" / "cost.csv")["method"]) == set(methods)
    assert "main-study claims read the model tiny-llama\n" in (results / "logs" / "claims.log").read_text()
    claims_table = pd.read_csv(results / "tables" / "claims.csv")
    assert len(claims_table) >= 15 and set(claims_table["verdict"]) <= {
        "holds",
        "does not hold",
        "inconclusive at this scale",
    }
    # FeedSign's one bit up and down is exact in any config, even the smoke one.
    assert claims_table["verdict"].iloc[0] == "holds", claims_table.iloc[0].to_dict()

    # The HTML report embeds every figure and table the workflow marks for it, with captions.
    report = tmp_path / "report.html"
    run_workflow(
        tmp_path,
        ROOT / "config" / "smoke.yaml",
        "--config",
        f"results_dir={results}",
        f"figures_dir={figures}",
        "--report",
        str(report),
        cores=None,  # as the README gives the command
    )
    html = report.read_text()
    for name in (
        "final_metric.csv",
        "claims.csv",
        "cost.png",
        "communication.png",
        "robustness.png",
        "heterogeneity.png",
        "sweep.png",
        "oneshot_gap.png",
        "convergence_bits.png",
    ):
        assert name in html, name
    assert "Each paper's headline claim" in html  # a caption from workflow/report/
    # The Byzantine study: its own table (one row per method, fraction and rule) and robustness figure,
    # and the NaN attacker's payloads rejected, never applied.
    byz = pd.read_csv(results / "tables" / "byzantine" / "final_metric.csv")
    assert len(byz) == 2 * 2 * 2 + 2  # fedavg and fedkseed: 2 fractions x 2 rules; feedsign: 2 x its vote
    assert set(byz["aggregator"]) == {"mean", "median"}
    # fraction 0 is no attack: the honest runs are the main study's (one folder, shared)
    assert set(byz.loc[byz["byz_frac"] == 0, "attack"]) == {"none"}
    assert (byz["n_seeds"] == len(seeds)).all(), byz[["method", "byz_frac", "aggregator", "n_seeds"]]
    for ext in ("png", "pdf"):
        assert (figures / "byzantine" / f"robustness.{ext}").stat().st_size > 5000
    nan_runs = sorted(results.glob("runs/fedkseed/alpha0.5/byz0.4/**/rounds.jsonl"))
    assert len(nan_runs) == 2
    for path in nan_runs:
        last = json.loads(path.read_text().splitlines()[-1])
        # 2 of 5 clients rejected, every round
        assert last["rejected_cum"] == smoke["run_defaults"]["federation"]["rounds"] * 2
    # a run folder in the results schema per (method, model size, seed) of the main study
    metas = sorted(results.glob("runs/*/alpha0.5/seed*/meta.json"))
    metas += sorted(results.glob("runs/*/alpha0.5/layers1/seed*/meta.json"))
    assert len(metas) == len(methods) * 2 * len(seeds)
    metas = [m for m in metas if "local-only" not in m.parts]  # its config is checked above
    # --configfile replaces the default study instead of merging into it: each run's resolved config is
    # the smoke file's (its defaults, then its method block), with nothing inherited from config.yaml.
    for meta_path in metas:
        cfg = json.loads(meta_path.read_text())["config"]
        block = smoke["methods"][cfg["method"]["name"]]
        rounds = block.get("federation", {}).get("rounds", smoke["run_defaults"]["federation"]["rounds"])
        assert cfg["federation"]["rounds"] == rounds
        assert cfg["task"] == {**cfg["task"], **smoke["run_defaults"]["task"]}
        assert cfg["method"]["params"] == block["method"]["params"]


def test_slurm_profile_plans_every_run_with_its_resources(tmp_path: Path) -> None:
    """`snakemake --profile workflow/profiles/slurm -n`: the Slurm executor plugin loads, the profile
    parses, and every run of the smoke config is planned with the profile's per-rule requests."""
    import re
    import subprocess
    import sys

    from zofo.grid.study import expand

    profile = yaml.safe_load((ROOT / "workflow" / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    cmd = [
        sys.executable, "-m", "snakemake", "--profile", str(ROOT / "workflow" / "profiles" / "slurm"), "-n",
        "--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
        "--configfile", str(ROOT / "config" / "smoke.yaml"),
        "--config", f"results_dir={tmp_path / 'results'}", f"figures_dir={tmp_path / 'figures'}",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = proc.stdout + proc.stderr
    runs, _ = expand(yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text()))
    planned = re.search(r"^run\s+(\d+)$", out, re.MULTILINE)
    assert planned and int(planned.group(1)) == len(runs), out[-3000:]
    want = profile["set-resources"]["run"]
    jobs = out.split("rule run:")[1:]
    assert len(jobs) == len(runs)
    for job in jobs:
        res = re.search(r"resources: (.*)", job).group(1)
        assert f"cpus_per_task={want['cpus_per_task']}" in res and f"runtime={want['runtime']}" in res, res


def smoke_with(tmp_path: Path, **top: object) -> Path:
    """config/smoke.yaml with ``top`` laid over its top level (run_defaults and methods merged key by
    key), written to ``tmp_path``, its results there too."""
    from zofo.grid.study import deep_merge

    smoke = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    where = {"results_dir": str(tmp_path / "results"), "figures_dir": str(tmp_path / "figures")}
    cfg = deep_merge(smoke, {**top, **where})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def test_gpu_runs_hold_one_gpu_each_and_cpu_runs_none(tmp_path: Path) -> None:
    """`snakemake -n --resources gpu=2`: every run whose device is cuda is planned with gpu=1 (so at most
    two run at once), every cpu run with gpu=0."""
    from zofo.grid.study import expand

    config = smoke_with(tmp_path, run_defaults={"device": "cuda"}, methods={"zo-fedsgd": {"device": "cpu"}})
    jobs = planned_runs(dry_run(tmp_path, config, "--cores", "4", "--resources", "gpu=2"))
    runs, _ = expand(yaml.safe_load(config.read_text()))
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
    plan = dry_run(tmp_path, config, "--profile", str(ROOT / "workflow" / "profiles" / "slurm"))
    jobs = planned_runs(plan)
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
