"""Snakemake shim: run rows -> convergence against round and cumulative uplink bits, or (for a
robustness study) the final metric against the Byzantine fraction."""

import sys
from pathlib import Path

from zofo import plots, tables
from zofo.results import load_runs

# Not a `with` block: an uncaught exception's traceback is printed to sys.stderr after the block would
# have closed the file, and would be lost; the file closes when the process exits.
log = open(snakemake.log[0], "w")  # noqa: F821, SIM115 (snakemake injects it)
sys.stderr = log

rows, status = load_runs([Path(p).parent for p in snakemake.input.runs])  # noqa: F821
settings = list(tables.iter_settings(rows))
if len(settings) != 1:
    raise ValueError(
        f"a study's figures show one setting (model, task, partition, alpha); got {len(settings)}"
    )
((_, setting_rows),) = settings
out = snakemake.output  # noqa: F821
if hasattr(out, "robustness"):  # a robustness study: final metric against the Byzantine fraction
    plots.robustness(setting_rows, out.robustness)
else:
    # Every method drawn, registered or written as a workflow rule (the workflow test reads this line).
    print("series: " + ", ".join(sorted(setting_rows["method"].unique())), file=log)
    plots.convergence(setting_rows, "round", out.by_round, status=status)
    plots.convergence(setting_rows, "bits_up_cum", out.by_bits, status=status)
# Runs that did not finish ok are drawn with an end marker and named in the caption; say so here too.
for st in status[status["status"] != "ok"].itertuples():
    print(f"marked {st.status}: {st.method} seed {st.seed} ({st.reason})", file=log)
