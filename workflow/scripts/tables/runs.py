"""Snakemake script: a study's run folders -> its run table and its curve table, with the grid cell."""

import sys
from pathlib import Path

from zofo.analysis import tables
from zofo.analysis.load import grid_columns, load_runs

# Not a `with` block: an uncaught exception's traceback is printed to sys.stderr after the block would
# have closed the file, and would be lost; the file closes when the process exits.
log = open(snakemake.log[0], "w")  # noqa: F821, SIM115 (snakemake injects it)
sys.stderr = log
sm = snakemake  # noqa: F821

grid = grid_columns(sm.params.axes)
# load_runs reads each folder's meta.json and rounds.jsonl: the rule's two inputs.
rows, status = load_runs([Path(p).parent for p in sm.input.meta], sm.params.axes)
runs = tables.run_table(rows, status, grid)
tables.write_csv(runs, sm.output.runs)
tables.write_csv(tables.curve_table(rows, grid), sm.output.curves)
print(f"{len(runs)} runs ({dict(runs['status'].value_counts())}), {len(rows)} rows; grid {grid}", file=log)
