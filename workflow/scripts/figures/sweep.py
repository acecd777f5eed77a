"""Snakemake script: a sweep study's tables -> final metric against the swept grid value."""

from zofo.analysis import figures as plots
from zofo.analysis import tables
from zofo.analysis.load import grid_columns
from zofo.grid.job import job_log

with job_log(snakemake.log[0]) as log:  # noqa: F821 (snakemake injects it)
    sm = snakemake  # noqa: F821

    final, runs = tables.read_table(sm.input.final), tables.read_table(sm.input.runs)
    axis = plots.swept_axis(final, grid_columns(sm.params.axes))
    print(f"series: {', '.join(sorted(final['method'].unique()))}; x: {axis}", file=log)
    plots.sweep(final, tables.read_table(sm.input.pretrained), runs, axis, sm.output.png)
