"""The two tables every other table, figure and claim is computed from: one row per run (``run_table``)
and one row per run and evaluated round (``curve_table``), both carrying the run's grid cell.

Inputs are the frames of ``zofo.analysis.load.load_runs``: ``rows`` (one row per evaluation point,
every status) and ``status`` (one row per run folder). A run that failed before writing any row is
still a row of the run table (from its ``meta.json``), so that every later table counts it.
``run_table`` refuses runs that a table would average but that are not one experiment
(``check_consistent``); the tables read back from CSV are therefore consistent by construction.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from zofo.analysis.tables.keys import GROUP_KEYS, describe
from zofo.core.config import NOT_IDENTITY
from zofo.engine.record import atomic_write_text

# Config keys that may differ between seeds of one experiment without changing what is measured: the
# seed, and the keys that are not part of a run's identity (its hash).
SEED_FREE_IGNORED: frozenset[str] = frozenset({"seed", *NOT_IDENTITY})
# Columns of the run table after the group keys and the grid columns.
RUN_COLUMNS: tuple[str, ...] = (
    "seed",
    "status",
    "reason",
    "metric_name",
    "num_clients",
    "cohort_size",
    "threads",
    "start_metric",
    "final_metric",
    "start_loss",
    "final_loss",
    "final_round",
    "bits_up_total",
    "bits_down_total",
    "bits_catch_up_total",
    "rejected_total",
    "bits_up_per_client_round",
    "bits_down_per_client_round",
    "bits_up_per_round",
    "formula_up",
    "formula_down",
    "client_seconds_per_round",
    "server_seconds_per_round",
    "peak_rss_mb",
    "config_hash",
    "run_dir",
)
CURVE_COLUMNS: tuple[str, ...] = (
    "seed",
    "status",
    "round",
    "metric_name",
    "metric",
    "eval_loss",
    "bits_up_cum",
    "bits_down_cum",
    "run_dir",
)
# Per-round seconds are summed over a run's rows (each row holds the time since the previous one).
COST_COLUMNS: tuple[str, ...] = ("client_seconds", "server_seconds")
# Text columns of every table: read back as text, an empty cell as "" (a run without a label).
TEXT_COLUMNS: frozenset[str] = frozenset(
    {
        "method",
        "family",
        "model",
        "task",
        "partition",
        "attack",
        "aggregator",
        "label",
        "metric_name",
        "status",
        "reason",
        "run_dir",
        "config_hash",
        "seeds",
        "reported",
    }
)


def run_table(rows: pd.DataFrame, status: pd.DataFrame, grid: Sequence[str] = ()) -> pd.DataFrame:
    """One row per run folder in ``status``: group keys, ``grid`` columns, then ``RUN_COLUMNS``.

    ``start_metric`` / ``start_loss`` are the round-0 row's (NaN if the run has none), ``final_metric``
    / ``final_loss`` the last evaluated round's; for a diverged run that is its last evaluation before
    divergence, which tables never average but figures mark. Totals are the last row's cumulative
    counts; ``bits_catch_up_total`` is the part of the downlink that returning clients downloaded for
    rounds they missed (the rows' ``bits_catch_up``; 0 under full participation).
    ``bits_*_per_client_round`` divide them by the rounds and the cohort (the engine counts the
    broadcast once per receiving client, so the downlink figure is one broadcast plus the catch-up
    spread over the cohort's rounds), NaN for a run that trained no round.
    ``client_seconds_per_round`` is the sum of the rows' ``client_seconds`` over the rounds trained
    (evaluation time is left out: it depends on the schedule, not on the method), ``peak_rss_mb`` the
    largest of the rows'. A run without rows keeps its keys from ``meta.json`` and NaN measurements.
    Raises ValueError (``check_consistent``) rather than hold two configurations as seeds of one group.
    """
    grid = list(grid)
    by_dir: dict[str, pd.DataFrame] = {}
    if len(rows):
        by_dir = {
            str(d): g.sort_values("round", kind="stable") for d, g in rows.groupby("run_dir", sort=False)
        }
    records = []
    for st in status.to_dict("records"):
        run_dir = str(st["run_dir"])
        g = by_dir.get(run_dir)
        rec: dict[str, Any] = {k: st.get(k, math.nan) for k in grid}
        rec.update(
            seed=st.get("seed"),
            status=st.get("status"),
            reason=st.get("reason"),
            cohort_size=st.get("cohort_size", math.nan),
            threads=st.get("threads", math.nan),
            formula_up=st.get("formula_up", math.nan),
            formula_down=st.get("formula_down", math.nan),
            config_hash=st.get("config_hash"),
            run_dir=run_dir,
        )
        if g is not None and len(g):
            rec.update(_measured(g, rec["cohort_size"]))
        else:
            rec.update({k: st.get(k) for k in GROUP_KEYS})
            rec.update({c: math.nan for c in RUN_COLUMNS if c not in rec})
            rec["metric_name"] = st.get("metric_name")
        records.append(rec)
    runs = pd.DataFrame(records, columns=[*GROUP_KEYS, *grid, *RUN_COLUMNS])
    configs = (
        dict(zip(status["run_dir"].astype(str), status["config"], strict=True)) if "config" in status else {}
    )
    check_consistent(runs, grid, configs)
    return runs


def _measured(g: pd.DataFrame, cohort: Any) -> dict[str, Any]:
    first, last = g.iloc[0], g.iloc[-1]
    names = set(g["metric_name"].dropna())
    rounds = int(last["round"])
    rec: dict[str, Any] = {k: first[k] for k in GROUP_KEYS}
    rec.update(
        metric_name=first["metric_name"] if len(names) == 1 else ",".join(sorted(names)),
        num_clients=int(first["num_clients"]),
        start_metric=float(first["metric"]) if first["round"] == 0 else math.nan,
        final_metric=float(last["metric"]),
        start_loss=float(first.get("eval_loss", math.nan)) if first["round"] == 0 else math.nan,
        final_loss=float(last.get("eval_loss", math.nan)),
        final_round=rounds,
        bits_up_total=int(last["bits_up_cum"]),
        bits_down_total=int(last["bits_down_cum"]),
        rejected_total=int(last.get("rejected_cum", 0)),
        # Rows that predate the column caught up on nothing (load_runs fills its default).
        bits_catch_up_total=int(g["bits_catch_up"].sum()) if "bits_catch_up" in g.columns else 0,
    )
    # Bits of a trained round; the division order is the one the communication check compares exactly.
    known = rounds > 0 and not pd.isna(cohort)
    rec["bits_up_per_client_round"] = last["bits_up_cum"] / rounds / cohort if known else math.nan
    rec["bits_down_per_client_round"] = last["bits_down_cum"] / rounds / cohort if known else math.nan
    rec["bits_up_per_round"] = last["bits_up_cum"] / rounds if rounds > 0 else math.nan
    for col in COST_COLUMNS:
        total = float(g[col].sum()) if col in g.columns else math.nan
        rec[f"{col}_per_round"] = total / rounds if rounds > 0 else math.nan
    rec["peak_rss_mb"] = float(g["peak_rss_mb"].max()) if "peak_rss_mb" in g.columns else math.nan
    return rec


def curve_table(rows: pd.DataFrame, grid: Sequence[str] = ()) -> pd.DataFrame:
    """One row per run and evaluated round, every status: group keys, ``grid`` columns, then
    ``CURVE_COLUMNS`` (the metric, the eval loss and the cumulative bits of all clients at that round).
    Rows in run order, each run's by round."""
    columns = [*GROUP_KEYS, *grid, *CURVE_COLUMNS]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    out = rows.assign(eval_loss=rows["eval_loss"] if "eval_loss" in rows.columns else math.nan)
    order = {d: i for i, d in enumerate(dict.fromkeys(out["run_dir"].astype(str)))}
    out = out.assign(_run=out["run_dir"].astype(str).map(order))
    return out.sort_values(["_run", "round"], kind="stable")[columns].reset_index(drop=True)


# --------------------------------------------------------------------------------------------------
# consistency


def check_consistent(
    runs: pd.DataFrame, grid: Sequence[str] = (), configs: Mapping[str, Mapping[str, Any]] | None = None
) -> None:
    """Raise ValueError where runs that a table would average are not one experiment.

    ``runs`` holds the group keys, the ``grid`` columns, ``seed``, ``config_hash`` and ``run_dir``.
    Two checks, both within one group (group keys and grid columns), so that one label may span
    several models or tasks. (1) One seed must map to one ``config_hash`` and one folder: otherwise two
    configurations (or one run twice) would be averaged as if they were seeds. (2) The recorded configs
    (``configs``: run_dir -> config mapping) must agree on every key except the seed and the keys outside
    a run's identity (``SEED_FREE_IGNORED``); the hash includes the seed, so check (1) alone cannot
    see e.g. a learning rate that differs between seeds. Runs without a config skip check (2).

    No config path is exempted for the grid columns: runs that differ in a grid value land in different
    groups and are never compared, while a difference the grid does not separate (a second
    hyperparameter swept across the first) is still refused, as it must be, since a table would average
    over it.
    """
    if runs.empty:
        return
    group_keys = [*GROUP_KEYS, *grid]
    for keys, g in runs.groupby([*group_keys, "seed"], dropna=False, sort=True):
        where = describe(keys[:-1], group_keys) + f" seed {keys[-1]}"
        hashes = sorted({str(h) for h in g["config_hash"]})
        if len(hashes) > 1:
            raise ValueError(
                f"{where}: runs with different config_hash {hashes} would be averaged together "
                f"({sorted(g['run_dir'])}); give them different labels or load them separately"
            )
        if len(g) > 1:
            raise ValueError(
                f"{where}: {len(g)} run folders of config_hash {hashes[0]} ({sorted(g['run_dir'])}); "
                f"one seed would be counted {len(g)} times"
            )
    configs = configs or {}
    for keys, g in runs.groupby(group_keys, dropna=False, sort=True):
        flat = {}
        for d in g["run_dir"].astype(str):
            config = configs.get(d)
            if config:
                # A run written before the dtype was configurable ran in float32.
                config = {"dtype": "float32", **config}
                flat[d] = _flatten({k: v for k, v in config.items() if k not in SEED_FREE_IGNORED})
        if len(flat) < 2:
            continue
        ref_dir, ref = next(iter(flat.items()))
        for d, cfg in flat.items():
            diff = sorted(k for k in ref.keys() | cfg.keys() if ref.get(k) != cfg.get(k))
            if diff:
                detail = ", ".join(f"{k}: {ref.get(k)} vs {cfg.get(k)}" for k in diff)
                raise ValueError(
                    f"{describe(keys, group_keys)}: runs {ref_dir} and {d} differ in more than the seed "
                    f"({detail}); give them different labels or load them separately"
                )


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, Mapping):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): json.dumps(obj, sort_keys=True)}


# --------------------------------------------------------------------------------------------------
# as files


def write_csv(table: pd.DataFrame, path: str | Path) -> None:
    """A table as CSV, replaced atomically (a reader never sees half a table)."""
    atomic_write_text(path, table.to_csv(index=False))


def read_table(path: str | Path) -> pd.DataFrame:
    """A table written by ``write_csv``, typed as it was written: text columns stay text (an empty
    label is "", not NaN), numbers are numbers, an empty number is NaN."""
    header = list(pd.read_csv(path, nrows=0).columns)
    text = [c for c in header if c in TEXT_COLUMNS]
    return pd.read_csv(
        path,
        dtype=dict.fromkeys(text, str),
        keep_default_na=False,
        na_values={c: ["", "nan", "NaN", "<NA>"] for c in header if c not in text},
    )
