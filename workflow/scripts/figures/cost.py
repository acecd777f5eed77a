"""Snakemake script: the cost table -> the cost figure."""

import sys

from zofo.analysis import figures as plots
from zofo.analysis import tables

log = open(snakemake.log[0], "w")  # noqa: F821, SIM115 (snakemake injects it; see tables/runs.py)
sys.stderr = log
sm = snakemake  # noqa: F821

plots.cost(tables.read_table(sm.input.cost), sm.output.png)
