"""Snakemake script: a one-shot study's gap table -> the gap FedAvg minus one-shot against model size."""

import sys

from zofo.analysis import figures as plots
from zofo.analysis import tables

log = open(snakemake.log[0], "w")  # noqa: F821, SIM115 (snakemake injects it; see tables/runs.py)
sys.stderr = log
sm = snakemake  # noqa: F821

gaps = tables.read_table(sm.input.gap)
plots.oneshot_gap(gaps, tables.read_table(sm.input.runs), sm.output.png)
print(gaps.to_string(), file=log)
