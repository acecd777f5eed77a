"""Snakemake script: a named study's run table -> its final-metric table (CSV, Markdown) and its
pretrained levels."""

from zofo.analysis import tables
from zofo.analysis.load import grid_columns
from zofo.grid.job import job_log

with job_log(snakemake.log[0]) as log:  # noqa: F821 (snakemake injects it)
    sm = snakemake  # noqa: F821

    grid = grid_columns(sm.params.axes)
    runs = tables.read_table(sm.input.runs)
    final = tables.final_metric_table(runs, grid)
    tables.write_tables(final, sm.output.csv, sm.output.md, grid=grid)
    tables.write_csv(tables.pretrained_table(runs), sm.output.pretrained)
    print(tables.to_markdown(tables.format_final_table(final, grid=grid)), file=log)
