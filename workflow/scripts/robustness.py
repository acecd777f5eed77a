"""Snakemake shim: a robustness study's run rows -> final metric against the Byzantine fraction."""

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
            f"the robustness figure shows one setting (model, task, partition, alpha); got {len(settings)}"
        )
    ((_, setting_rows),) = settings
    plots.robustness(setting_rows, snakemake.output.png)  # noqa: F821
    for st in status[status["status"] != "ok"].itertuples():
        print(f"marked {st.status}: {st.method} seed {st.seed} ({st.reason})", file=log)
