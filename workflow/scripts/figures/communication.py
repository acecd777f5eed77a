"""Snakemake script: the communication and bits-to-target tables -> the communication figure."""

import sys

from zofo.analysis import figures as plots
from zofo.analysis import tables

log = open(snakemake.log[0], "w")  # noqa: F821, SIM115 (snakemake injects it; see tables/runs.py)
sys.stderr = log
sm = snakemake  # noqa: F821

comm, to_target = tables.read_table(sm.input.comm), tables.read_table(sm.input.to_target)
plots.communication(comm, sm.output.png, to_target)
