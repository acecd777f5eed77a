"""Snakemake shim: run rows -> convergence against round and against cumulative uplink bits."""

import sys
from pathlib import Path

with open(snakemake.log[0], "w") as log:  # noqa: F821 (snakemake injects it)
    sys.stderr = log
    from zofo import plots, tables
    from zofo.results import load_runs

    rows, status = load_runs([Path(p).parent for p in snakemake.input.runs])  # noqa: F821
    settings = list(tables.iter_settings(rows))
    if len(settings) != 1:
        raise ValueError(
            f"the convergence figures show one setting (model, task, partition, alpha); got {len(settings)}"
        )
    ((_, setting_rows),) = settings
    plots.convergence(setting_rows, "round", snakemake.output.by_round, status=status)  # noqa: F821
    plots.convergence(setting_rows, "bits_up_cum", snakemake.output.by_bits, status=status)  # noqa: F821
    # Runs that did not finish ok are drawn with an end marker and named in the caption; say so here too.
    for st in status[status["status"] != "ok"].itertuples():
        print(f"marked {st.status}: {st.method} seed {st.seed} ({st.reason})", file=log)
