"""Snakemake script: a study's run folders -> its run table and its curve table, with the grid cell.

Every folder is verified first (``zofo check``: complete rows, a finite final metric, its recorded config
against the one the workflow declares for it, bits against the method's formula): a table never averages
a run that fails, and the job's log names each failure."""

import os
from pathlib import Path

from zofo.analysis import tables
from zofo.analysis.load import grid_columns, load_runs
from zofo.analysis.verify import verify_runs
from zofo.core.errors import ZofoError
from zofo.grid.job import job_log

with job_log(snakemake.log[0]) as log:  # noqa: F821 (snakemake injects it)
    sm = snakemake  # noqa: F821

    run_dirs = [os.path.normpath(Path(p).parent) for p in sm.input.meta]
    declared = {os.path.normpath(k): cfg for k, cfg in sm.params.declared.items()}
    problems = verify_runs(run_dirs, declared)
    for p in problems:
        print(f"zofo check: {p.run_dir}: {p.check}: {p.message}", file=log)
    if problems:
        bad = sorted({p.run_dir for p in problems})
        raise ZofoError(
            f"{len(bad)} of {len(run_dirs)} run folders fail the results check ({', '.join(bad[:3])}"
            f"{', ...' if len(bad) > 3 else ''}; each failure is listed in this log): run them again "
            "(snakemake --forcerun run_tables and the runs named) or remove them"
        )
    grid = grid_columns(sm.params.axes)
    # load_runs reads each folder's meta.json and rounds.jsonl: the rule's two inputs.
    rows, status = load_runs(run_dirs, sm.params.axes)
    runs = tables.run_table(rows, status, grid)
    tables.write_csv(runs, sm.output.runs)
    tables.write_csv(tables.curve_table(rows, grid), sm.output.curves)
    print(
        f"{len(runs)} runs ({dict(runs['status'].value_counts())}), {len(rows)} rows; grid {grid}", file=log
    )
