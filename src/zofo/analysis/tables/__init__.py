"""Tables from run folders, by concern; every statistic in them is ``zofo.analysis.stats``'s.

- ``runs``: the run table (one row per run) and the curve table (one row per run and evaluated round),
  from ``zofo.analysis.load.load_runs``'s frames, with the consistency check; CSV in and out.
- ``summary``: over seeds: the final metric per group, the pretrained level, the mean curve, the
  one-shot gap.
- ``communication``: bits per client and round against the formulas, and bits to a target metric.
- ``cost``: seconds per round and peak memory.
- ``format``: Markdown and LaTeX.
- ``reported``: the papers' numbers beside ours.

Every table after the run and curve tables is computed from them alone (never from run folders), so
the workflow writes those two once per study and every other table, figure and claim reads them.
Groups are the ``GROUP_KEYS`` and the study's grid columns (``zofo.analysis.load.grid_columns``).
"""

from zofo.analysis.tables.communication import (
    bits_to_target,
    bits_to_target_by_setting,
    check_communication,
    communication_table,
)
from zofo.analysis.tables.cost import cost_table
from zofo.analysis.tables.format import (
    format_bits,
    format_communication_table,
    format_final_table,
    pm,
    to_markdown,
    write_latex,
    write_tables,
)
from zofo.analysis.tables.keys import FAMILY_ORDER, GROUP_KEYS, SETTING_KEYS, iter_settings, sort_rows
from zofo.analysis.tables.reported import (
    REPORTED_COLUMNS,
    REPORTED_METHOD_ALIASES,
    REPORTED_MODEL_ALIASES,
    REPORTED_TASK_ALIASES,
    attach_reported,
    load_reported,
    read_reported,
)
from zofo.analysis.tables.runs import (
    check_consistent,
    curve_table,
    read_table,
    run_table,
    write_csv,
)
from zofo.analysis.tables.summary import (
    ONESHOT_PAIR,
    curve_summary_table,
    final_metric_table,
    gap_table,
    pretrained_table,
)

__all__ = [
    "FAMILY_ORDER",
    "GROUP_KEYS",
    "ONESHOT_PAIR",
    "REPORTED_COLUMNS",
    "REPORTED_METHOD_ALIASES",
    "REPORTED_MODEL_ALIASES",
    "REPORTED_TASK_ALIASES",
    "SETTING_KEYS",
    "attach_reported",
    "bits_to_target",
    "bits_to_target_by_setting",
    "check_communication",
    "check_consistent",
    "communication_table",
    "cost_table",
    "curve_summary_table",
    "curve_table",
    "final_metric_table",
    "format_bits",
    "format_communication_table",
    "format_final_table",
    "gap_table",
    "iter_settings",
    "load_reported",
    "pm",
    "pretrained_table",
    "read_reported",
    "read_table",
    "run_table",
    "sort_rows",
    "to_markdown",
    "write_csv",
    "write_latex",
    "write_tables",
]
