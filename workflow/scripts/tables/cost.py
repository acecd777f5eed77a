"""Snakemake script: the main study's run table -> its cost table (CSV, Markdown)."""

from zofo.analysis import tables
from zofo.analysis.load import grid_columns
from zofo.engine.record import atomic_write_text
from zofo.grid.job import job_log

with job_log(snakemake.log[0]) as log:  # noqa: F821 (snakemake injects it)
    sm = snakemake  # noqa: F821

    cost = tables.cost_table(tables.read_table(sm.input.runs), grid_columns(sm.params.axes))
    tables.write_csv(cost, sm.output.csv)
    atomic_write_text(sm.output.md, tables.to_markdown(cost))
