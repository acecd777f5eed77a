"""Snakemake script: a study's curve summary, curves and runs -> its convergence figures, by round
and by cumulative uplink bits."""

from zofo.analysis import figures as plots
from zofo.analysis import tables
from zofo.grid.job import job_log

with job_log(snakemake.log[0]) as log:  # noqa: F821 (snakemake injects it)
    sm = snakemake  # noqa: F821

    summary, curves = tables.read_table(sm.input.summary), tables.read_table(sm.input.curves)
    runs = tables.read_table(sm.input.runs)
    # Every method drawn, registered or written as a workflow rule (the workflow test reads this line).
    print("series: " + ", ".join(sorted(curves["method"].unique())), file=log)
    # Runs that did not finish ok are drawn with an end marker or named in the caption; name them here too.
    for r in runs[runs["status"] != "ok"].itertuples():
        print(f"marked {r.status}: {r.method} seed {r.seed} ({r.reason})", file=log)
    plots.convergence(summary, curves, "round", sm.output.by_round, runs=runs)
    plots.convergence(summary, curves, "bits_up_cum", sm.output.by_bits, runs=runs)
