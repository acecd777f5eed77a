"""Snakemake script: a study's run table -> its communication table, checked against the formulas."""

from zofo.analysis import tables
from zofo.analysis.load import grid_columns
from zofo.grid.job import job_log

with job_log(snakemake.log[0]) as log:  # noqa: F821 (snakemake injects it)
    sm = snakemake  # noqa: F821

    comm = tables.communication_table(tables.read_table(sm.input.runs), grid_columns(sm.params.axes))
    tables.write_csv(comm, sm.output.csv)
    print(tables.to_markdown(tables.format_communication_table(comm)), file=log)
    # Written first so a mismatch can be inspected; then the job fails: a wrong count is a wrong result.
    tables.check_communication(comm)
