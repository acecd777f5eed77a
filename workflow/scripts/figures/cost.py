"""Snakemake script: the cost table -> the cost figure."""

from zofo.analysis import figures as plots
from zofo.analysis import tables
from zofo.grid.job import job_log

with job_log(snakemake.log[0]) as log:  # noqa: F821 (snakemake injects it)
    sm = snakemake  # noqa: F821

    plots.cost(tables.read_table(sm.input.cost), sm.output.png)
