"""Snakemake script: a Byzantine study's tables -> final metric against the Byzantine fraction."""

import sys

from zofo.analysis import figures as plots
from zofo.analysis import tables

log = open(snakemake.log[0], "w")  # noqa: F821, SIM115 (snakemake injects it; see tables/runs.py)
sys.stderr = log
sm = snakemake  # noqa: F821

final, runs = tables.read_table(sm.input.final), tables.read_table(sm.input.runs)
print("series: " + ", ".join(sorted(final["method"].unique())), file=log)
plots.robustness(final, tables.read_table(sm.input.pretrained), runs, sm.output.png)
