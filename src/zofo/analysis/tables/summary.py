"""Summaries over seeds of the run and curve tables: the final metric per group, the pretrained level,
the mean curve per group and round, and the one-shot gap. Every statistic is ``zofo.analysis.stats``'s.

Runs whose status is not ``ok`` never enter a mean, but the final table counts them, so a method that
diverged on half its seeds cannot look as good as one that did not.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from zofo.analysis import stats
from zofo.analysis.tables.keys import GROUP_KEYS, describe, sort_rows

FINAL_COLUMNS: tuple[str, ...] = (
    "metric_name",
    "n_seeds",
    "seeds",
    "n_diverged",
    "n_failed",
    "n_other",
    "final_mean",
    "final_sd",
    "start_mean",
    "gain_mean",
    "gain_sd",
    "start_loss_mean",
    "final_loss_mean",
    "final_loss_sd",
    "final_round",
    "bits_up_per_run",
    "bits_down_per_run",
)


def _check_grid(frame: pd.DataFrame, grid: Sequence[str]) -> None:
    missing = [k for k in grid if len(frame) and k not in frame.columns]
    if missing:
        raise ValueError(
            f"grid columns {missing} are not columns of the table; load the runs with their axes"
        )


def final_metric_table(runs: pd.DataFrame, grid: Sequence[str] = ()) -> pd.DataFrame:
    """Final metric per group (the group keys and the ``grid`` columns), over ok runs of ``run_table``.

    Columns: the group keys, the grid columns, ``metric_name``, ``n_seeds`` (ok runs), ``seeds`` (their
    seeds, "0,1,2"), ``n_diverged``, ``n_failed``, ``n_other`` (any other status, e.g. a run still
    "running"), ``final_mean`` / ``final_sd`` (last evaluated round; sd with ddof=1, NaN with one seed),
    ``start_mean`` (round 0, the pretrained model), ``gain_mean`` / ``gain_sd`` (final - start per
    run), ``start_loss_mean`` / ``final_loss_mean`` / ``final_loss_sd`` (eval loss at round 0 and at
    the last evaluated round), ``final_round`` (max over ok runs), ``bits_up_per_run`` and
    ``bits_down_per_run`` (mean total bits of an ok run, all clients). A group whose runs all diverged
    or failed still gets a row, with ``n_seeds`` 0 and NaN metrics; runs of one group that report
    different metrics raise ValueError. Rows sorted by ``sort_rows``.
    """
    _check_grid(runs, grid)
    group_keys = [*GROUP_KEYS, *grid]
    if runs.empty:
        return pd.DataFrame(columns=[*group_keys, *FINAL_COLUMNS])
    records = []
    for keys, g in runs.groupby(group_keys, dropna=False, sort=False):
        ok = g[g["status"] == "ok"]
        names = sorted({str(n) for n in g["metric_name"].dropna() if str(n)})
        if len(names) > 1:
            raise ValueError(f"{describe(keys, group_keys)}: runs report different metrics {names}")
        gain = ok["final_metric"] - ok["start_metric"]
        records.append(
            {
                **dict(zip(group_keys, keys, strict=True)),
                "metric_name": names[0] if names else None,
                "n_seeds": len(ok),
                "seeds": ",".join(str(s) for s in sorted(ok["seed"].tolist())),
                "n_diverged": int((g["status"] == "diverged").sum()),
                "n_failed": int((g["status"] == "failed").sum()),
                "n_other": int((~g["status"].isin(["ok", "diverged", "failed"])).sum()),
                "final_mean": stats.mean(ok["final_metric"]),
                "final_sd": stats.sd(ok["final_metric"]),
                "start_mean": stats.mean(ok["start_metric"]),
                "gain_mean": stats.mean(gain),
                "gain_sd": stats.sd(gain),
                # The eval loss moves more smoothly than accuracy: at a few dozen ZO steps it shows
                # progress that a 300-example accuracy cannot resolve.
                "start_loss_mean": stats.mean(ok["start_loss"]),
                "final_loss_mean": stats.mean(ok["final_loss"]),
                "final_loss_sd": stats.sd(ok["final_loss"]),
                "final_round": int(ok["final_round"].max()) if len(ok) else pd.NA,
                "bits_up_per_run": stats.mean(ok["bits_up_total"]),
                "bits_down_per_run": stats.mean(ok["bits_down_total"]),
            }
        )
    table = pd.DataFrame(records, columns=[*group_keys, *FINAL_COLUMNS])
    return sort_rows(table, grid).reset_index(drop=True)


PRETRAINED_KEYS: tuple[str, ...] = ("model", "task", "metric_name")


def pretrained_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The pretrained level per model, task and metric: ``pretrained`` (``stats.pretrained_level`` of
    the ok runs' round-0 metric) and ``n_runs`` (ok runs with a round-0 row). The reference line of the
    study figures; round 0 evaluates the same pretrained model whatever the method or partition."""
    columns = [*PRETRAINED_KEYS, "n_runs", "pretrained"]
    ok = runs[runs["status"] == "ok"] if len(runs) else runs
    if ok.empty:
        return pd.DataFrame(columns=columns)
    records = [
        {
            **dict(zip(PRETRAINED_KEYS, keys, strict=True)),
            "n_runs": int(g["start_metric"].notna().sum()),
            "pretrained": stats.pretrained_level(g["start_metric"]),
        }
        for keys, g in ok.groupby(list(PRETRAINED_KEYS), dropna=False, sort=True)
    ]
    return pd.DataFrame(records, columns=columns)


CURVE_SUMMARY_COLUMNS: tuple[str, ...] = (
    "metric_name",
    "round",
    "n_runs",
    "n",
    "metric_mean",
    "metric_sd",
    "metric_min",
    "metric_max",
    "bits_up_cum_mean",
    "bits_down_cum_mean",
)


def curve_summary_table(curves: pd.DataFrame, grid: Sequence[str] = ()) -> pd.DataFrame:
    """The mean curve of each group over its ok runs: one row per group and evaluated round.

    Columns: the group keys, the ``grid`` columns, ``metric_name``, ``round``, ``n_runs`` (ok runs of
    the group), ``n`` (those evaluated at this round), ``metric_mean`` / ``metric_sd`` / ``metric_min``
    / ``metric_max`` over them, and the mean cumulative bits at that round (equal across seeds when
    payload sizes are fixed). Groups without an ok run have no rows; ``curve_table`` still holds their
    runs.
    """
    _check_grid(curves, grid)
    group_keys = [*GROUP_KEYS, *grid]
    columns = [*group_keys, *CURVE_SUMMARY_COLUMNS]
    ok = curves[curves["status"] == "ok"] if len(curves) else curves
    if ok.empty:
        return pd.DataFrame(columns=columns)
    records = []
    for keys, g in ok.groupby(group_keys, dropna=False, sort=False):
        names = sorted({str(n) for n in g["metric_name"].dropna()})
        if len(names) > 1:
            raise ValueError(f"{describe(keys, group_keys)}: runs report different metrics {names}")
        metric = stats.summarize(g, ["round"], "metric").set_index("round")
        for rnd, at in g.groupby("round", sort=True):
            records.append(
                {
                    **dict(zip(group_keys, keys, strict=True)),
                    "metric_name": names[0] if names else None,
                    "round": int(rnd),
                    "n_runs": g["run_dir"].nunique(),
                    "n": int(metric.loc[rnd, "n"]),
                    "metric_mean": metric.loc[rnd, "mean"],
                    "metric_sd": metric.loc[rnd, "sd"],
                    "metric_min": metric.loc[rnd, "min"],
                    "metric_max": metric.loc[rnd, "max"],
                    "bits_up_cum_mean": stats.mean(at["bits_up_cum"]),
                    "bits_down_cum_mean": stats.mean(at["bits_down_cum"]),
                }
            )
    table = pd.DataFrame(records, columns=columns)
    return sort_rows(table, [*grid, "round"]).reset_index(drop=True)


# The pair of the one-shot study: multi-round FedAvg and one round at equal local compute.
ONESHOT_PAIR: tuple[str, str] = ("fedavg", "oneshot")
GAP_COLUMNS: tuple[str, ...] = tuple(f"{m}_{q}" for m in ONESHOT_PAIR for q in ("mean", "sd", "n")) + (
    "gap",
    "gap_se",
)


def gap_table(final: pd.DataFrame, grid: Sequence[str] = ()) -> pd.DataFrame:
    """The one-shot gap (``stats.oneshot_gap``: FedAvg minus one-shot, group means) per cell run by both.

    ``final`` is a ``final_metric_table``; a cell is every group key but the method (and its family)
    plus the ``grid`` columns, so the gap is read at one model size, alpha and attack at a time.
    Columns: the cell, ``metric_name``, each method's ``_mean`` / ``_sd`` / ``_n`` (ok seeds), ``gap``
    and ``gap_se`` (NaN where a side has fewer than two ok seeds, or none). Cells that only one of the
    two methods ran are left out. Rows in ``sort_rows`` order of their FedAvg group.
    """
    _check_grid(final, grid)
    cell = [k for k in (*GROUP_KEYS, *grid) if k not in ("method", "family")]
    columns = [*cell, "metric_name", *GAP_COLUMNS]
    pair = final[final["method"].isin(ONESHOT_PAIR)] if len(final) else final
    records = []
    for keys, g in pair.groupby(cell, dropna=False, sort=False):
        sides = {m: g[g["method"] == m] for m in ONESHOT_PAIR}
        if any(len(s) == 0 for s in sides.values()):
            continue
        if any(len(s) > 1 for s in sides.values()):
            raise ValueError(f"{describe(keys, cell)}: several groups of one method; the gap needs one each")
        rec = {**dict(zip(cell, keys, strict=True)), "metric_name": g["metric_name"].iloc[0]}
        est = {}
        for m, side in sides.items():
            row = side.iloc[0]
            n = int(row["n_seeds"])
            rec.update({f"{m}_mean": row["final_mean"], f"{m}_sd": row["final_sd"], f"{m}_n": n})
            est[m] = stats.Estimate.of_group(float(row["final_mean"]), float(row["final_sd"]), n)
        gap = stats.oneshot_gap(*(est[m] for m in ONESHOT_PAIR))
        rec.update(gap=gap.value, gap_se=gap.se)
        records.append(rec)
    table = pd.DataFrame(records, columns=columns)
    if table.empty:
        return table
    ordered = sort_rows(table.assign(method=ONESHOT_PAIR[0], family="fo"), grid)
    return ordered.drop(columns=["method", "family"]).reset_index(drop=True)
