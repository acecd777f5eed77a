"""Snakemake script: the main study's run and curve tables -> the bits each group needed to reach its
setting's target metric."""

from zofo.analysis import tables
from zofo.analysis.load import grid_columns
from zofo.grid.job import job_log

with job_log(snakemake.log[0]) as log:  # noqa: F821 (snakemake injects it)
    sm = snakemake  # noqa: F821

    runs, curves = tables.read_table(sm.input.runs), tables.read_table(sm.input.curves)
    # Bits are compared within one setting (a model size): a target and a table part per setting.
    to_target = tables.bits_to_target_by_setting(runs, curves, grid_columns(sm.params.axes))
    tables.write_csv(to_target, sm.output.csv)
    for setting, part in tables.iter_settings(to_target):
        print(f"target metric for bits_to_target at {setting}: {part['target'].iloc[0]:.4f}", file=log)
