"""Snakemake script: a study's curve table -> each group's mean curve over its ok seeds."""

import sys

from zofo.analysis import tables
from zofo.analysis.load import grid_columns

log = open(snakemake.log[0], "w")  # noqa: F821, SIM115 (snakemake injects it; see tables/runs.py)
sys.stderr = log
sm = snakemake  # noqa: F821

summary = tables.curve_summary_table(tables.read_table(sm.input.curves), grid_columns(sm.params.axes))
tables.write_csv(summary, sm.output.csv)
