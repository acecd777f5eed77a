"""Snakemake script: the main study's run table -> its cost table (CSV, Markdown)."""

import sys

from zofo.analysis import tables
from zofo.analysis.load import grid_columns
from zofo.engine.record import atomic_write_text

log = open(snakemake.log[0], "w")  # noqa: F821, SIM115 (snakemake injects it; see tables/runs.py)
sys.stderr = log
sm = snakemake  # noqa: F821

cost = tables.cost_table(tables.read_table(sm.input.runs), grid_columns(sm.params.axes))
tables.write_csv(cost, sm.output.csv)
atomic_write_text(sm.output.md, tables.to_markdown(cost))
