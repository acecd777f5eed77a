# zofo: the workflow that turns a config of studies into runs, tables and figures.
#   snakemake --cores all                              # the embedded default (config/config.yaml)
#   snakemake --cores all --configfile config/smoke.yaml   # the CI smoke run on a tiny model
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")


# The default study unless a config file is given: `--configfile` replaces it rather than being merged
# into it, so a smoke or paper config never inherits a default method block by accident.
if "run_defaults" not in config:

    configfile: f"{workflow.basedir}/config/config.yaml"


# `snakemake --report report.html`: every figure and table, with the captions in workflow/report/.
report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/assets.smk"
include: "workflow/rules/runs.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/bench.smk"


# Methods written as workflow rules: one file each (README, "Add a method as a workflow rule").
for _method_rules in sorted(Path(workflow.basedir, "workflow", "rules", "methods").glob("*.smk")):

    include: str(_method_rules)


rule all:
    input:
        all_outputs(),
    default_target: True
