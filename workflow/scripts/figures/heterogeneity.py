"""Snakemake script: a heterogeneity study's tables -> final metric against the Dirichlet alpha."""

from zofo.analysis import figures as plots
from zofo.analysis import tables
from zofo.grid.job import job_log

with job_log(snakemake.log[0]) as log:  # noqa: F821 (snakemake injects it)
    sm = snakemake  # noqa: F821

    final, runs = tables.read_table(sm.input.final), tables.read_table(sm.input.runs)
    print("series: " + ", ".join(sorted(final["method"].unique())), file=log)
    plots.heterogeneity(final, tables.read_table(sm.input.pretrained), runs, sm.output.png)
