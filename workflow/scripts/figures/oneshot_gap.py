"""Snakemake script: a one-shot study's gap table -> the gap FedAvg minus one-shot against model size."""

from zofo.analysis import figures as plots
from zofo.analysis import tables
from zofo.grid.job import job_log

with job_log(snakemake.log[0]) as log:  # noqa: F821 (snakemake injects it)
    sm = snakemake  # noqa: F821

    gaps = tables.read_table(sm.input.gap)
    plots.oneshot_gap(gaps, tables.read_table(sm.input.runs), sm.output.png)
    print(gaps.to_string(), file=log)
