# Helpers of the table and figure rules (tables.smk, figures.smk): which axes make a study's grid
# columns, which files its run tables read, and which tables the claims and the figures read.


def grid_axes(name):
    """A study's grid axes (dotted RunConfig keys): each becomes a column of its tables unless rows
    already carry it (zofo.analysis.load.grid_columns)."""
    return sorted(STUDIES[name]["grid"])


def run_files(name):
    """What a study's run tables read of its runs: every run's meta.json and rounds.jsonl."""
    return {
        "meta": study_meta(name),
        "rounds": [f"{RESULTS}/runs/{path}/rounds.jsonl" for path in STUDY_RUNS[name]],
    }


def declared_configs(name):
    """Run folder -> the config the workflow declares for it, for a study's runs: the run tables check
    each recorded config against it (zofo.analysis.verify), so a run left from another config is
    refused even where Snakemake's metadata is gone (a copied results tree, a fresh clone)."""
    return {f"{RESULTS}/runs/{p}": RUN_CONFIGS[p] if p in RUN_CONFIGS else RULE_RUNS[p] for p in STUDY_RUNS[name]}


def claim_tables(wildcards):
    """The tables the claims read: the main study's, and those of the first heterogeneity, robustness
    and one-shot studies of the config where it has them."""
    tables = f"{RESULTS}/tables"
    paths = {
        "main": f"{tables}/final_metric.csv",
        "comm": f"{tables}/communication.csv",
        "cost": f"{tables}/cost.csv",
        "to_target": f"{tables}/bits_to_target.csv",
    }
    for evidence, name in claim_studies().items():
        paths[evidence] = f"{tables}/{name}/" + ("gap.csv" if evidence == "oneshot" else "final_metric.csv")
    return paths


def study_tables(kind, **tables):
    """An input function: input name -> the table of that name (``.csv``) of the study in the wildcards,
    which must be a study whose figure is ``kind``."""

    def inputs(wildcards):
        drawn = STUDIES[wildcards.study]["figure"]
        if drawn != kind:
            raise WorkflowError(f"study {wildcards.study!r} draws {drawn!r}, not {kind!r}")
        return {name: f"{RESULTS}/tables/{wildcards.study}/{table}.csv" for name, table in tables.items()}

    return inputs
