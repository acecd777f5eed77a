"""Snakemake script: a sweep study's tables -> final metric against the swept grid value."""

import sys

from zofo.analysis import figures as plots
from zofo.analysis import tables
from zofo.analysis.load import grid_columns

log = open(snakemake.log[0], "w")  # noqa: F821, SIM115 (snakemake injects it; see tables/runs.py)
sys.stderr = log
sm = snakemake  # noqa: F821

final, runs = tables.read_table(sm.input.final), tables.read_table(sm.input.runs)
axis = plots.swept_axis(final, grid_columns(sm.params.axes))
print(f"series: {', '.join(sorted(final['method'].unique()))}; x: {axis}", file=log)
plots.sweep(final, tables.read_table(sm.input.pretrained), runs, axis, sm.output.png)
