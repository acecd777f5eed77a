"""Snakemake script: a study's curve table -> each group's mean curve over its ok seeds."""

from zofo.analysis import tables
from zofo.analysis.load import grid_columns
from zofo.grid.job import job_log

with job_log(snakemake.log[0]) as log:  # noqa: F821 (snakemake injects it)
    sm = snakemake  # noqa: F821

    summary = tables.curve_summary_table(tables.read_table(sm.input.curves), grid_columns(sm.params.axes))
    tables.write_csv(summary, sm.output.csv)
