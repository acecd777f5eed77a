"""Compute cost per group: client and server seconds per round and peak memory, over ok runs."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from zofo.analysis import stats
from zofo.analysis.tables.keys import GROUP_KEYS, describe, sort_rows

COST_STATS: tuple[str, ...] = ("client_seconds_per_round", "server_seconds_per_round", "peak_rss_mb")


def cost_table(runs: pd.DataFrame, grid: Sequence[str] = ()) -> pd.DataFrame:
    """Measured compute cost per group (the group keys and the ``grid`` columns), over ok runs.

    From ``run_table``'s per-run ``client_seconds_per_round``, ``server_seconds_per_round`` and
    ``peak_rss_mb`` (a run that trained no round has NaN seconds); runs without rows are left out.
    Columns: the group keys, the grid columns, ``n_seeds`` (ok runs with rows), then ``<quantity>_mean``
    / ``<quantity>_sd`` for the three (sd with ddof=1, NaN with one run); a group whose runs all
    diverged or failed keeps its row with ``n_seeds`` 0.

    The runs of a group must have used one ``threads`` setting, ValueError otherwise. ``run_table``
    already refuses such a group (the thread count is part of a run's identity); this check keeps a
    run table made another way from averaging timings taken at different thread counts.
    """
    group_keys = [*GROUP_KEYS, *grid]
    columns = [*group_keys, "n_seeds", *(f"{q}_{s}" for q in COST_STATS for s in ("mean", "sd"))]
    measured = runs[runs["final_round"].notna()] if len(runs) else runs
    if measured.empty:
        return pd.DataFrame(columns=columns)
    records = []
    for keys, g in measured.groupby(group_keys, dropna=False, sort=False):
        ok = g[g["status"] == "ok"]
        threads = {int(t) for t in ok["threads"].dropna()}
        if len(threads) > 1:
            raise ValueError(
                f"{describe(keys, group_keys)}: runs used different thread counts {sorted(threads)}; "
                "their timings cannot be averaged"
            )
        rec = {**dict(zip(group_keys, keys, strict=True)), "n_seeds": len(ok)}
        for q in COST_STATS:
            rec[f"{q}_mean"] = stats.mean(ok[q])
            rec[f"{q}_sd"] = stats.sd(ok[q])
        records.append(rec)
    return sort_rows(pd.DataFrame(records, columns=columns), grid).reset_index(drop=True)
