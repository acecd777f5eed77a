"""Snakemake script: a one-shot study's final-metric table -> the gap FedAvg minus one-shot per cell."""

from zofo.analysis import tables
from zofo.analysis.load import grid_columns
from zofo.grid.job import job_log

with job_log(snakemake.log[0]) as log:  # noqa: F821 (snakemake injects it)
    sm = snakemake  # noqa: F821

    gaps = tables.gap_table(tables.read_table(sm.input.final), grid_columns(sm.params.axes))
    tables.write_csv(gaps, sm.output.csv)
    print(gaps.to_string(), file=log)
