# Config validation and the expansion of the config's grid into run folders.
import re
from pathlib import Path

from snakemake.utils import validate

from zofo.assets.catalog import WHEEL_ASSETS, prepared_weights  # the packaged GGUF models, listed once
from zofo.grid import study  # the grid -> runs expansion, shared with the tests (tests/unit/test_baselines.py)

# Snakemake's YAML loader keeps the later of two values of one key without a word: read every config
# file again with zofo's reader, which refuses a key given twice (naming it and both lines).
from zofo.core.config import read_config_file  # noqa: E402
from zofo.core.errors import ConfigError  # noqa: E402

for _configfile in workflow.configfiles:
    try:
        read_config_file(_configfile)
    except ConfigError as e:
        raise WorkflowError(f"config: {e}")

validate(config, Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml")

RESULTS = config["results_dir"]
FIGURES = config["figures_dir"]
# Every rule runs in the project's environment (used with --use-conda; the default runs in the current one).
ENV = str(Path(workflow.basedir) / "environment.yml")


# Every study's runs: folder (under RESULTS/runs) -> RunConfig mapping, and study -> its folders. A
# run two studies share is one folder and one job (zofo.grid.study.expand).
try:
    RUN_CONFIGS, STUDY_RUNS = study.expand(config)
except ValueError as e:
    raise WorkflowError(f"config: {e}")
# Runs of methods written as workflow rules (workflow/rules/methods/): in the main study's tables, run by
# their own rules.
RULE_RUNS = study.rule_runs(config)
STUDIES = study.studies(config)
EXTRA_STUDIES = [name for name in STUDIES if name != study.MAIN]

# Check every run's config now, so a typo fails before any job starts, with the key named.
from zofo.core.config import RunConfig  # noqa: E402
from zofo.core.errors import ZofoError  # noqa: E402
from zofo.core.registry import METHODS  # noqa: E402
from zofo.grid.gpu_slots import gpus_for_device  # noqa: E402

# Where converted model weights are cached (rule prepare_model writes them, runs read them).
ASSETS = config["run_defaults"].get("assets_dir", RunConfig.assets_dir)

# What `device: auto` runs are scheduled as: the workflow cannot see where a job will land.
AUTO_DEVICE = config.get("auto_device", "cpu")
# The Slurm GPU type a GPU run asks for (`sbatch --gpus=<model>:1`); none: any card.
GPU_MODEL = config.get("gpu_model")
# Run folder -> the GPUs its job holds, the `gpu` resource of the run rule (1 for a cuda device, else 0).
RUN_GPUS = {}
for _path, _cfg in RUN_CONFIGS.items():
    try:
        RUN_GPUS[_path] = gpus_for_device(RunConfig.from_dict(_cfg).device, AUTO_DEVICE)
    except ZofoError as e:
        raise WorkflowError(f"config: run {_path}: {e}")

# The run rule's wildcards: the parts of a run folder (zofo.grid.study.RUN_DIR), each with a simple
# constraint. Its methods are the registered ones; a method written as a workflow rule has a rule of its
# own (workflow/rules/methods/), so its name is left out.
RULE_METHODS = set(config.get("rule_methods") or {})
RUN_WILDCARDS = {
    "method": "|".join(re.escape(m) for m in METHODS.names() if m not in RULE_METHODS),
    "cell": study.CELL_PATTERN,
    "seed": study.SEED_PATTERN,
}


def run_folder(wildcards, method=None):
    """The run folder (relative to RESULTS/runs) a job's wildcards name; ``method`` for a rule that writes
    the runs of one method, whose wildcards leave it out."""
    method = method or wildcards.method
    return study.RUN_DIR.format(method=method, cell=wildcards.cell, seed=wildcards.seed)


def declared(runs, path):
    """What ``runs`` (keyed by run folder) holds for ``path``; a folder that no study of the config
    declares (a typo in a requested target, a value in no grid) is refused by name."""
    if path not in runs:
        raise WorkflowError(
            f"run folder {RESULTS}/runs/{path}: no study of this config declares it, so its parameters "
            "are unknown; request a folder the config's grids name (snakemake -n lists them)"
        )
    return runs[path]


def run_config(wildcards):
    """The config mapping of the run the job's wildcards name (rule run)."""
    return declared(RUN_CONFIGS, run_folder(wildcards))


def study_meta(name):
    return [f"{RESULTS}/runs/{path}/meta.json" for path in STUDY_RUNS[name]]


def all_run_meta():
    return study_meta(study.MAIN) if study.MAIN in STUDY_RUNS else []


# The figures each kind of study draws (figures/<study>/<name>.png|pdf, one job each).
STUDY_FIGURES = {
    "convergence": ["convergence_round", "convergence_bits"],
    "robustness": ["robustness"],
    "heterogeneity": ["heterogeneity"],
    "sweep": ["sweep"],
    "oneshot": ["oneshot_gap"],
}
def claim_studies():
    """The study of each kind the claims table reads (the first declared), by evidence name."""
    wanted = {"heterogeneity": "heterogeneity", "byzantine": "robustness", "oneshot": "oneshot"}
    return {
        evidence: next(n for n in EXTRA_STUDIES if STUDIES[n]["figure"] == kind)
        for evidence, kind in wanted.items()
        if any(STUDIES[n]["figure"] == kind for n in EXTRA_STUDIES)
    }


# The papers' reported numbers, placed beside the measured ones where the setting matches.
REPORTED = sorted(str(p) for p in Path(workflow.basedir, "baselines").glob("*/reported.csv"))


def study_outputs(name):
    """The tables and figures of one named study (the main study's are at the top level)."""
    figures = STUDY_FIGURES[STUDIES[name]["figure"]]
    return [f"{RESULTS}/tables/{name}/{t}" for t in ("final_metric.csv", "final_metric.md", "communication.csv")] + [
        f"{FIGURES}/{name}/{f}.{ext}" for f in figures for ext in ("png", "pdf")
    ]


def all_outputs():
    main = (
        [
            f"{RESULTS}/tables/{t}"
            for t in (
                "final_metric.csv",
                "final_metric.md",
                "final_metric.tex",
                "communication.csv",
                "cost.csv",
                "cost.md",
                "bits_to_target.csv",
                "claims.csv",
                "claims.md",
            )
        ]
        + [
            f"{FIGURES}/{f}.{ext}"
            for f in ("convergence_round", "convergence_bits", "communication", "cost")
            for ext in ("png", "pdf")
        ]
        if study.MAIN in STUDY_RUNS
        else []
    )
    return main + [out for name in EXTRA_STUDIES for out in study_outputs(name)]


def asset_for(cfg):
    """The converted weights a run config needs (a packaged GGUF model: zofo.assets.catalog), else nothing."""
    name = cfg["model"]["name"]
    return [str(prepared_weights(name, ASSETS))] if name in WHEEL_ASSETS else []
