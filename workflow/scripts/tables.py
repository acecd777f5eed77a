"""Snakemake shim: run folders -> the final-metric and communication tables."""

import sys
from pathlib import Path

from zofo import tables
from zofo.results import load_runs

# Not a `with` block: an uncaught exception's traceback is printed to sys.stderr after the block would
# have closed the file, and would be lost; the file closes when the process exits.
log = open(snakemake.log[0], "w")  # noqa: F821, SIM115 (snakemake injects it)
sys.stderr = log

run_dirs = [Path(p).parent for p in snakemake.input]  # noqa: F821
rows, status = load_runs(run_dirs)
final = tables.final_metric_table(rows, status)
tables.write_tables(final, snakemake.output.csv, snakemake.output.md)  # noqa: F821
comm = tables.communication_table(rows)
comm.to_csv(snakemake.output.comm, index=False)  # noqa: F821
# Written first so a mismatch can be inspected; then the job fails: a wrong count is a wrong result.
tables.check_communication(comm)
print(tables.to_markdown(tables.format_final_table(final)), file=log)
