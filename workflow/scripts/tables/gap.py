"""Snakemake script: a one-shot study's final-metric table -> the gap FedAvg minus one-shot per cell."""

import sys

from zofo.analysis import tables
from zofo.analysis.load import grid_columns

log = open(snakemake.log[0], "w")  # noqa: F821, SIM115 (snakemake injects it; see tables/runs.py)
sys.stderr = log
sm = snakemake  # noqa: F821

gaps = tables.gap_table(tables.read_table(sm.input.final), grid_columns(sm.params.axes))
tables.write_csv(gaps, sm.output.csv)
print(gaps.to_string(), file=log)
