"""Snakemake shim: run folders -> the tables of the main study or of a named study."""

import sys
from pathlib import Path

import pandas as pd

from zofo.analysis import tables
from zofo.analysis.load import load_runs
from zofo.engine.record import atomic_write_text

# Not a `with` block: an uncaught exception's traceback is printed to sys.stderr after the block would
# have closed the file, and would be lost; the file closes when the process exits.
log = open(snakemake.log[0], "w")  # noqa: F821, SIM115 (snakemake injects it)
sys.stderr = log
sm = snakemake  # noqa: F821

rows, status = load_runs([Path(p).parent for p in sm.input.runs])
extra = dict(getattr(sm.params, "extra", None) or {})
main = "tex" in sm.output.keys()  # the main study also gets LaTeX, cost, bits to target
if main:  # the model size of each row: the main table is a method x model size table
    extra[tables.PARAMETERS] = tables.PARAMETERS_META
if extra:  # on status too: a run that failed before its first row still carries its grid value
    rows = tables.attach_meta_columns(rows, extra)
    status = tables.attach_meta_columns(status, extra)
final = tables.final_metric_table(rows, status, extra_keys=tuple(extra))
if main:  # the papers' numbers beside ours where model, task and metric match
    # The reported.csv files are inputs (a change re-runs this job); they sit in baselines/<paper>/.
    reported = (
        tables.load_reported(Path(sm.input.reported[0]).parents[1])
        if sm.input.reported
        else pd.DataFrame(columns=list(tables.REPORTED_COLUMNS))
    )
    final = tables.attach_reported(final, reported)
tables.write_tables(final, sm.output.csv, sm.output.md, extra_keys=tuple(extra))
comm = tables.communication_table(rows)
atomic_write_text(sm.output.comm, comm.to_csv(index=False))
if main:
    tables.write_latex(final, sm.output.tex)
    cost = tables.cost_table(rows, status)
    atomic_write_text(sm.output.cost, cost.to_csv(index=False))
    atomic_write_text(sm.output.cost_md, tables.to_markdown(cost))
    # Bits are compared within one setting (a model size): a target and a table part per setting.
    parts = []
    for setting, setting_rows in tables.iter_settings(rows):
        part, target = tables.bits_to_target(setting_rows, status)
        parts.append(part)
        print(f"target metric for bits_to_target at {setting}: {target:.4f}", file=log)
    atomic_write_text(sm.output.to_target, pd.concat(parts, ignore_index=True).to_csv(index=False))
# Written first so a mismatch can be inspected; then the job fails: a wrong count is a wrong result.
tables.check_communication(comm)
print(tables.to_markdown(tables.format_final_table(final)), file=log)
