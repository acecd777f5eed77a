"""Snakemake script: the communication and bits-to-target tables -> the communication figure."""

from zofo.analysis import figures as plots
from zofo.analysis import tables
from zofo.grid.job import job_log

with job_log(snakemake.log[0]) as log:  # noqa: F821 (snakemake injects it)
    sm = snakemake  # noqa: F821

    comm, to_target = tables.read_table(sm.input.comm), tables.read_table(sm.input.to_target)
    plots.communication(comm, sm.output.png, to_target)
