"""Snakemake shim: run rows and tables -> one figure (or the pair a rule names), by the kind of study."""

import sys
from pathlib import Path

import pandas as pd

from zofo.analysis import figures as plots
from zofo.analysis import tables
from zofo.analysis.load import load_runs

# Not a `with` block: an uncaught exception's traceback is printed to sys.stderr after the block would
# have closed the file, and would be lost; the file closes when the process exits.
log = open(snakemake.log[0], "w")  # noqa: F821, SIM115 (snakemake injects it)
sys.stderr = log
sm = snakemake  # noqa: F821
kind = sm.params.kind
out = sm.output

if kind == "communication_and_cost":
    plots.communication(pd.read_csv(sm.input.comm), out.communication, pd.read_csv(sm.input.to_target))
    plots.cost(pd.read_csv(sm.input.cost), out.cost)
    sys.exit(0)

rows, status = load_runs([Path(p).parent for p in sm.input.runs])
extra = dict(getattr(sm.params, "extra", None) or {})
if extra:
    rows = tables.attach_meta_columns(rows, extra)
    status = tables.attach_meta_columns(status, extra)
# Runs that did not finish ok are drawn with an end marker (convergence) or left out of the means and
# named in the caption (the study figures); name them here too.
for st in status[status["status"] != "ok"].itertuples():
    print(f"marked {st.status}: {st.method} seed {st.seed} ({st.reason})", file=log)

if kind in ("heterogeneity", "oneshot"):
    # These figures span settings on purpose (alphas; models and alphas).
    if kind == "heterogeneity":
        plots.heterogeneity(rows, out.png)
    else:
        plots.oneshot_gap(rows, "size", out.png)
    sys.exit(0)

if kind == "convergence":
    # One panel per model (a study over model sizes), smallest first.
    sized = tables.attach_meta_columns(rows, {"size": tables.PARAMETERS_META})
    order = [str(m) for m in sized.groupby("model")["size"].max().sort_values().index]
    print("series: " + ", ".join(sorted(rows["method"].unique())), file=log)
    if hasattr(out, "by_round"):  # the main study: both convergence figures in one job
        plots.convergence(rows, "round", out.by_round, status=status, facet_order=order)
        plots.convergence(rows, "bits_up_cum", out.by_bits, status=status, facet_order=order)
    else:  # a study's convergence figure: by round or by uplink bits, as the file is named
        x = "round" if Path(out.png).stem == "convergence_round" else "bits_up_cum"
        plots.convergence(rows, x, out.png, status=status, facet_order=order)
    sys.exit(0)

settings = list(tables.iter_settings(rows))
if len(settings) != 1:
    raise ValueError(
        f"a {kind} figure shows one setting (model, task, partition, alpha); got {len(settings)}"
    )
((_, setting_rows),) = settings
# Every method drawn, registered or written as a workflow rule (the workflow test reads this line).
print("series: " + ", ".join(sorted(setting_rows["method"].unique())), file=log)
if kind == "robustness":
    plots.robustness(setting_rows, out.png)
elif kind == "sweep":
    (axis,) = [a for a in extra if setting_rows[a].nunique(dropna=False) > 1] or list(extra)[:1]
    plots.sweep(setting_rows, axis, out.png)
else:
    raise ValueError(f"unknown figure kind {kind!r}")
