"""Tables from run folders: final metric per method and setting, and measured communication.

Inputs are the two frames of ``zofo.analysis.load.load_runs``: ``rows`` (one row per evaluation point, every
status) and ``status`` (one row per run folder). Runs whose status is not ``ok`` never enter a mean,
but every table counts them, so a method that diverged on half its seeds cannot look as good as one
that did not. A run that failed before writing any row is still counted, from its ``meta.json``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from zofo.engine.record import COLUMN_DEFAULTS, HIGHER_IS_BETTER, atomic_write_text

# A table row, a figure series and a "setting" are all keyed by these row columns.
GROUP_KEYS: tuple[str, ...] = (
    "method",
    "family",
    "model",
    "task",
    "partition",
    "alpha",
    "byz_frac",
    "attack",
    "aggregator",
    "label",
)
SETTING_KEYS: tuple[str, ...] = ("model", "task", "partition", "alpha")
# The main table's column of model size (attached from each run's meta.json): the pretrained model's
# weights, the size a row speaks for, and how the claims table picks the largest model of a study.
PARAMETERS = "parameters"
PARAMETERS_META = "model.parameters"  # the pretrained model's weights, whatever a method trains or adds
FAMILY_ORDER: dict[str, int] = {"fo": 0, "zo": 1}
# Config keys that may differ between seeds of one experiment without changing what is measured.
SEED_FREE_IGNORED: frozenset[str] = frozenset({"seed", "threads", "assets_dir", "device"})


# --------------------------------------------------------------------------------------------------
# reading what rows do not carry


def read_meta(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's ``meta.json``, or None where it cannot be read (a foreign or moved folder)."""
    try:
        return json.loads((Path(run_dir) / "meta.json").read_text())
    except (OSError, ValueError):
        return None


def cohort_size(meta: Mapping[str, Any]) -> int:
    """Clients per round as the engine used it: ``clients_per_round``, or all clients when null."""
    cfg = meta.get("config", {})
    per_round = cfg.get("federation", {}).get("clients_per_round")
    return int(per_round if per_round is not None else cfg.get("partition", {}).get("num_clients"))


_MISSING = object()


def _meta_value(meta: Mapping[str, Any] | None, path: str) -> Any:
    # A dotted path through nested mappings; any missing step (or no meta at all) is "missing".
    node: Any = meta
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def attach_meta_columns(rows: pd.DataFrame, columns: Mapping[str, str]) -> pd.DataFrame:
    """A copy of ``rows`` with one column per entry of ``columns``: name -> dotted path into meta.json.

    Rows carry only the group keys; what a sweep varies (``"config.method.params.K"``,
    ``"config.zo.eps"``) or what the engine measured once (``"model.trainable_parameters"``) lives in
    each run's ``meta.json``, which is read once per distinct ``run_dir``. A path missing from a run's
    meta (or a run without a readable meta) gives NaN for that run rather than an error, so runs of
    methods without the swept parameter can share a table. A list or mapping value is stored as its
    JSON text so that the column can be a group key (``final_metric_table(extra_keys=...)``). Works
    on the ``status`` frame as well (it too has ``run_dir``). Refuses to overwrite an existing column:
    replacing e.g. ``method`` would silently regroup every table.
    """
    clash = sorted(set(columns) & set(rows.columns))
    if clash:
        raise ValueError(f"columns {clash} already exist in rows; choose other names")
    out = rows.copy()
    metas = {d: read_meta(d) for d in dict.fromkeys(str(d) for d in rows["run_dir"])}
    for name, path in columns.items():
        per_run = {}
        for d, meta in metas.items():
            value = _meta_value(meta, path)
            if value is _MISSING or value is None:
                value = math.nan
            elif isinstance(value, Mapping | list):
                value = json.dumps(value, sort_keys=True)
            per_run[d] = value
        out[name] = pd.Series([per_run[str(d)] for d in rows["run_dir"]], index=rows.index)
    return out


def _keys_from_meta(meta: Mapping[str, Any] | None, status_row: Mapping[str, Any]) -> dict[str, Any]:
    # Only for runs with no rows (failed during setup): the rows would have carried these keys.
    cfg = (meta or {}).get("config", {})
    part = cfg.get("partition", {})
    name = part.get("name")
    return {
        "method": status_row.get("method") or cfg.get("method", {}).get("name"),
        "family": (meta or {}).get("method", {}).get("family"),
        "model": cfg.get("model", {}).get("name"),
        "task": cfg.get("task", {}).get("name"),
        "partition": name,
        # The engine writes alpha = inf for partitions without a concentration (see simulate.run).
        "alpha": float(part["alpha"]) if name == "dirichlet" and "alpha" in part else math.inf,
        "byz_frac": float(cfg.get("byzantine", {}).get("fraction", COLUMN_DEFAULTS["byz_frac"])),
        "attack": cfg.get("byzantine", {}).get("attack", COLUMN_DEFAULTS["attack"]),
        "aggregator": cfg.get("aggregator", {}).get("name", COLUMN_DEFAULTS["aggregator"]),
        "label": status_row.get("label") if status_row.get("label") is not None else cfg.get("label", ""),
    }


# --------------------------------------------------------------------------------------------------
# consistency


def check_consistent(runs: pd.DataFrame, extra_keys: Sequence[str] = ()) -> None:
    """Raise ValueError where runs that a table would average are not one experiment.

    ``runs`` is ``run_summary``'s frame. Two checks, both within one table group (method, family,
    model, task, partition, alpha, label), so that one label may span several models or tasks.
    (1) One seed must map to one ``config_hash`` and one folder: otherwise two configurations (or one
    run twice) would be averaged as if they were seeds. (2) The configs read from ``meta.json`` must
    agree on every key except seed, threads, assets_dir and device; the hash includes the seed, so check (1)
    alone cannot see e.g. a learning rate that differs between seeds. Folders without a readable
    meta.json skip check (2).

    ``extra_keys`` (columns of ``runs``, e.g. a swept ``K`` attached by ``attach_meta_columns``) are
    further group keys. No config path is exempted for them: runs that differ in a swept value land in
    different groups and are never compared, while a config difference that the extra keys do not
    separate (a second hyperparameter swept across the first) is still refused, as it must be, since
    the table would average over it.
    """
    if runs.empty:
        return
    group_keys = [*GROUP_KEYS, *extra_keys]
    for keys, g in runs.groupby([*group_keys, "seed"], dropna=False, sort=True):
        where = _describe(keys[:-1], group_keys) + f" seed {keys[-1]}"
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
    for keys, g in runs.groupby(group_keys, dropna=False, sort=True):
        configs = {}
        for d in g["run_dir"]:
            meta = read_meta(d)
            if meta is not None and "config" in meta:
                # A run written before the dtype was configurable ran in float32.
                config = {"dtype": "float32", **meta["config"]}
                configs[d] = _flatten({k: v for k, v in config.items() if k not in SEED_FREE_IGNORED})
        if len(configs) < 2:
            continue
        ref_dir, ref = next(iter(configs.items()))
        for d, cfg in configs.items():
            diff = sorted(k for k in ref.keys() | cfg.keys() if ref.get(k) != cfg.get(k))
            if diff:
                detail = ", ".join(f"{k}: {ref.get(k)} vs {cfg.get(k)}" for k in diff)
                raise ValueError(
                    f"{_describe(keys, group_keys)}: runs {ref_dir} and {d} differ in more than the seed "
                    f"({detail}); "
                    "give them different labels or load them separately"
                )


def _describe(keys: tuple[Any, ...], names: Sequence[str] = GROUP_KEYS) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in zip(names, keys, strict=True))


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, Mapping):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): json.dumps(obj, sort_keys=True)}


# --------------------------------------------------------------------------------------------------
# one row per run


def run_summary(rows: pd.DataFrame, status: pd.DataFrame, extra_keys: Sequence[str] = ()) -> pd.DataFrame:
    """One row per run folder in ``status``: group keys, seed, status, start/final metric, total bits.

    ``start_metric`` is the round-0 row (NaN if the run has none), ``final_metric`` the last evaluated
    round; for a diverged run that is its last evaluation before divergence, which tables never
    average but figures mark. ``extra_keys`` are further columns of ``rows`` carried along (see
    ``final_metric_table``); a run without rows takes them from ``status`` where it has the column
    (``attach_meta_columns`` works on either frame), NaN otherwise.
    """
    by_dir = {}
    if len(rows):
        by_dir = {str(d): g.sort_values("round") for d, g in rows.groupby("run_dir", sort=False)}
    records = []
    for st in status.to_dict("records"):
        run_dir = str(st["run_dir"])
        g = by_dir.get(run_dir)
        rec: dict[str, Any] = {
            "run_dir": run_dir,
            "seed": st.get("seed"),
            "status": st.get("status"),
            "config_hash": st.get("config_hash"),
        }
        if g is not None and len(g):
            first, last = g.iloc[0], g.iloc[-1]
            rec.update({k: first[k] for k in (*GROUP_KEYS, *extra_keys)})
            names = set(g["metric_name"].dropna())
            rec.update(
                metric_name=first["metric_name"] if len(names) == 1 else ",".join(sorted(names)),
                start_metric=float(first["metric"]) if first["round"] == 0 else math.nan,
                final_metric=float(last["metric"]),
                start_loss=float(first.get("eval_loss", math.nan)) if first["round"] == 0 else math.nan,
                final_loss=float(last.get("eval_loss", math.nan)),
                final_round=int(last["round"]),
                bits_up_total=int(last["bits_up_cum"]),
                bits_down_total=int(last["bits_down_cum"]),
                num_clients=int(first["num_clients"]),
            )
        else:
            meta = read_meta(run_dir)
            rec.update(_keys_from_meta(meta, st))
            rec.update({k: st.get(k, math.nan) for k in extra_keys})
            rec.update(
                metric_name=(meta or {}).get("task", {}).get("metric"),
                start_metric=math.nan,
                final_metric=math.nan,
                start_loss=math.nan,
                final_loss=math.nan,
                final_round=pd.NA,
                bits_up_total=pd.NA,
                bits_down_total=pd.NA,
                num_clients=pd.NA,
            )
        records.append(rec)
    return pd.DataFrame(records)


def _sort(df: pd.DataFrame, extra_keys: Sequence[str] = ()) -> pd.DataFrame:
    # Within each setting: FO methods first, then ZO, then anything else, each by name (then by any
    # extra group key, so a sweep reads in order of its value).
    order = df["family"].map(lambda f: FAMILY_ORDER.get(str(f).lower(), len(FAMILY_ORDER)))
    df = df.assign(_family_order=order)
    keys = [*SETTING_KEYS, "label", "_family_order", "method", "byz_frac", "aggregator", *extra_keys]
    return df.sort_values(keys, kind="stable", na_position="last").drop(columns="_family_order")


def _sd(x: pd.Series) -> float:
    return float(x.std(ddof=1)) if len(x) > 1 else math.nan


# --------------------------------------------------------------------------------------------------
# tables


def final_metric_table(
    rows: pd.DataFrame, status: pd.DataFrame, extra_keys: Sequence[str] = ()
) -> pd.DataFrame:
    """Final metric per (method, family, model, task, partition, alpha, label), over ok runs.

    Columns: the group keys, ``metric_name``, ``n_seeds`` (ok runs), ``seeds`` (their seeds, "0,1,2"),
    ``n_diverged``, ``n_failed``, ``n_other`` (any other status, e.g. a run still "running"),
    ``final_mean``/``final_sd`` (last evaluated round; sd with ddof=1, NaN with one seed),
    ``start_mean`` (round 0, the pretrained model), ``gain_mean``/``gain_sd`` (final - start per run),
    ``start_loss_mean``/``final_loss_mean``/``final_loss_sd`` (eval loss at round 0 and at the last
    evaluated round), ``final_round`` (max over ok runs), ``bits_up_per_run`` and
    ``bits_down_per_run`` (mean total bits of an ok run, all clients). A group whose runs all
    diverged or failed still gets a row, with ``n_seeds`` 0 and NaN metrics. Raises ValueError (see
    ``check_consistent``) rather than mix configurations.

    ``extra_keys`` are further group keys: columns already in ``rows`` (e.g. a swept hyperparameter
    or the model size attached by ``attach_meta_columns``), placed after the group keys in the output
    and used as the last sort key. Runs that differ only in an extra key become separate rows and are
    not refused as mixed configurations (see ``check_consistent``).
    """
    missing = [k for k in extra_keys if len(rows) and k not in rows.columns]
    if missing:
        raise ValueError(f"extra_keys {missing} are not columns of rows; attach them first")
    group_keys = [*GROUP_KEYS, *extra_keys]
    runs = run_summary(rows, status, extra_keys)
    check_consistent(runs, extra_keys)
    out_cols = [
        *group_keys,
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
    ]
    if runs.empty:
        return pd.DataFrame(columns=out_cols)
    records = []
    for keys, g in runs.groupby(group_keys, dropna=False, sort=False):
        ok = g[g["status"] == "ok"]
        names = sorted({str(n) for n in g["metric_name"].dropna()})
        if len(names) > 1:
            raise ValueError(f"{_describe(keys, group_keys)}: runs report different metrics {names}")
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
                "final_mean": float(ok["final_metric"].mean()) if len(ok) else math.nan,
                "final_sd": _sd(ok["final_metric"]),
                "start_mean": float(ok["start_metric"].mean()) if len(ok) else math.nan,
                "gain_mean": float(gain.mean()) if len(ok) else math.nan,
                "gain_sd": _sd(gain),
                # The eval loss moves more smoothly than accuracy: at a few dozen ZO steps it shows
                # progress that a 300-example accuracy cannot resolve.
                "start_loss_mean": float(ok["start_loss"].mean()) if len(ok) else math.nan,
                "final_loss_mean": float(ok["final_loss"].mean()) if len(ok) else math.nan,
                "final_loss_sd": _sd(ok["final_loss"]),
                "final_round": int(ok["final_round"].max()) if len(ok) else pd.NA,
                "bits_up_per_run": float(ok["bits_up_total"].astype(float).mean()) if len(ok) else math.nan,
                "bits_down_per_run": (
                    float(ok["bits_down_total"].astype(float).mean()) if len(ok) else math.nan
                ),
            }
        )
    return _sort(pd.DataFrame(records, columns=out_cols), extra_keys).reset_index(drop=True)


def communication_table(rows: pd.DataFrame, cohort_sizes: Mapping[str, int] | None = None) -> pd.DataFrame:
    """Measured bits per client and round, per group (method, family, model, task, partition, alpha, label).

    For each run, from its last row past round 0: ``bits_up_cum / round / cohort`` and the same for
    downlink (the engine counts the broadcast once per receiving client, so this is the size of one
    broadcast). Rows of every status are used: the bits a diverged run sent before its last
    evaluation are as real as those of an ok run. ``cohort_sizes`` maps ``run_dir`` to clients per
    round; when omitted it is read from each run's ``meta.json`` (federation.clients_per_round, or
    partition.num_clients when that is null), and a run without one raises ValueError rather than
    guess. Columns: group keys, ``cohort_size``, ``n_runs``, ``bits_up_per_client_round``,
    ``bits_down_per_client_round`` (means over runs), ``bits_up_per_round`` (all clients of a round)
    and ``per_run_spread`` (max - min of the uplink figure across runs; 0 when payload sizes are fixed).

    The check against the methods' formulas: ``formula_up`` / ``formula_down``
    are what each method's ``formula_bits`` gave for the run's model and cohort (recorded in
    ``meta.json`` by the engine, from parameters and sizes, never from payloads), ``matches_formula``
    whether every run's counted bits equal them exactly (empty when a run has no formula, e.g. one
    written by a workflow rule), and ``up_vs_fedavg`` the uplink as a fraction of FedAvg's in the same
    model, task and label (empty without a FedAvg run).
    """
    out_cols = [
        *GROUP_KEYS,
        "cohort_size",
        "n_runs",
        "bits_up_per_client_round",
        "bits_down_per_client_round",
        "bits_up_per_round",
        "per_run_spread",
        "formula_up",
        "formula_down",
        "matches_formula",
        "up_vs_fedavg",
    ]
    past0 = rows[rows["round"] > 0] if len(rows) else rows
    if past0.empty:
        return pd.DataFrame(columns=out_cols)
    last = past0.sort_values("round").groupby("run_dir", sort=False).tail(1)
    per_run = []
    for r in last.to_dict("records"):
        run_dir = str(r["run_dir"])
        meta = read_meta(run_dir)
        if cohort_sizes is not None and run_dir in cohort_sizes:
            cohort = int(cohort_sizes[run_dir])
        else:
            if meta is None or "config" not in meta:
                raise ValueError(f"{run_dir}: no readable meta.json config; pass cohort_sizes")
            cohort = cohort_size(meta)
        # A round whose payloads were rejected broadcasts less (or nothing): its counts are real but are
        # not the formula's full-cohort round, so such runs are not checked.
        formula = ((meta or {}).get("formula_bits") or {}) if not r.get("rejected_cum") else {}
        rounds = int(r["round"])
        up, down = r["bits_up_cum"] / rounds / cohort, r["bits_down_cum"] / rounds / cohort
        per_run.append(
            {
                **{k: r[k] for k in GROUP_KEYS},
                "cohort_size": cohort,
                "up": up,
                "down": down,
                "up_round": r["bits_up_cum"] / rounds,
                "formula_up": formula.get("uplink"),
                "formula_down": formula.get("downlink"),
                "match": None if not formula else (up == formula["uplink"] and down == formula["downlink"]),
            }
        )
    df = pd.DataFrame(per_run)
    records = []
    for keys, g in df.groupby(list(GROUP_KEYS), dropna=False, sort=False):
        records.append(
            {
                **dict(zip(GROUP_KEYS, keys, strict=True)),
                "cohort_size": ",".join(str(c) for c in sorted(set(g["cohort_size"]))),
                "n_runs": len(g),
                "bits_up_per_client_round": float(g["up"].mean()),
                "bits_down_per_client_round": float(g["down"].mean()),
                "bits_up_per_round": float(g["up_round"].mean()),
                "per_run_spread": float(g["up"].max() - g["up"].min()),
                "formula_up": _single(g["formula_up"]),
                "formula_down": _single(g["formula_down"]),
                "matches_formula": None if g["match"].isna().any() else bool(g["match"].all()),
            }
        )
    out = pd.DataFrame(records, columns=out_cols)
    # FedAvg's payload depends on the model only, so any FedAvg group of the same model, task and label.
    fedavg = {
        (r["model"], r["task"], r["label"]): r["bits_up_per_client_round"]
        for r in out[out["method"] == "fedavg"].to_dict("records")
    }
    keys = [(r["model"], r["task"], r["label"]) for r in out.to_dict("records")]
    out["up_vs_fedavg"] = [
        up / fedavg[k] if k in fedavg else None
        for up, k in zip(out["bits_up_per_client_round"], keys, strict=True)
    ]
    return _sort(out).reset_index(drop=True)


def _single(values: pd.Series) -> float | None:
    """The one formula value of a group (runs of one group share model and cohort), None if absent."""
    present = {float(v) for v in values if v is not None and not pd.isna(v)}
    return present.pop() if len(present) == 1 else None


def check_communication(comm: pd.DataFrame) -> None:
    """Raise ValueError naming every group whose counted bits differ from its method's formula."""
    bad = comm[comm["matches_formula"] == False]  # noqa: E712 (None = no formula, not a mismatch)
    if len(bad):
        lines = [
            f"{r['method']} ({r['model']}, {r['label']}): counted {r['bits_up_per_client_round']:g} up / "
            f"{r['bits_down_per_client_round']:g} down per client and round, formula {r['formula_up']} / "
            f"{r['formula_down']}"
            for r in bad.to_dict("records")
        ]
        raise ValueError("bits on the wire differ from the methods' formulas:\n  " + "\n  ".join(lines))


COST_COLUMNS: tuple[str, ...] = ("client_seconds", "server_seconds")


def cost_table(rows: pd.DataFrame, status: pd.DataFrame) -> pd.DataFrame:
    """Measured compute cost per group (method, family, model, task, partition, alpha, label), over ok runs.

    Per run: ``client_seconds_per_round`` is the sum of its rows' ``client_seconds`` (each row holds
    the time since the previous evaluation) over the rounds trained, i.e. its largest ``round``
    (round 0 trains nothing); ``server_seconds_per_round`` likewise; evaluation time is left out, as
    it depends on the evaluation schedule, not on the method. ``peak_rss_mb`` is the largest over the
    run's rows. A run that trained no round has NaN seconds. Columns: the group keys, ``n_seeds`` (ok
    runs with rows), then ``<quantity>_mean`` / ``<quantity>_sd`` for the three (sd with ddof=1, NaN
    with one run); a group whose runs all diverged or failed keeps its row with ``n_seeds`` 0.

    Besides ``check_consistent``, the runs of a group must have used one ``threads`` setting (read
    from meta.json): consistency ignores it because it changes no number, but it changes every time.
    """
    stats = ("client_seconds_per_round", "server_seconds_per_round", "peak_rss_mb")
    out_cols = [*GROUP_KEYS, "n_seeds", *(f"{q}_{s}" for q in stats for s in ("mean", "sd"))]
    if rows.empty:
        return pd.DataFrame(columns=out_cols)
    check_consistent(run_summary(rows, status))
    ok_dirs = {str(d) for d in status.loc[status["status"] == "ok", "run_dir"]}
    per_run = []
    for run_dir, g in rows.groupby("run_dir", sort=False):
        first = g.iloc[0]
        trained = int(g["round"].max())
        rec: dict[str, Any] = {k: first[k] for k in GROUP_KEYS}
        rec["ok"] = str(run_dir) in ok_dirs
        rec["run_dir"] = str(run_dir)
        for col in COST_COLUMNS:
            total = float(g[col].sum()) if col in g.columns else math.nan
            rec[f"{col}_per_round"] = total / trained if trained > 0 else math.nan
        rec["peak_rss_mb"] = float(g["peak_rss_mb"].max()) if "peak_rss_mb" in g.columns else math.nan
        per_run.append(rec)
    df = pd.DataFrame(per_run)
    records = []
    for keys, g in df.groupby(list(GROUP_KEYS), dropna=False, sort=False):
        ok = g[g["ok"]]
        threads = {(read_meta(d) or {}).get("config", {}).get("threads") for d in ok["run_dir"]} - {None}
        if len(threads) > 1:
            raise ValueError(
                f"{_describe(keys)}: runs used different thread counts {sorted(threads)}; "
                "their timings cannot be averaged"
            )
        rec = {**dict(zip(GROUP_KEYS, keys, strict=True)), "n_seeds": len(ok)}
        for q in stats:
            rec[f"{q}_mean"] = float(ok[q].mean()) if len(ok) else math.nan
            rec[f"{q}_sd"] = _sd(ok[q])
        records.append(rec)
    return _sort(pd.DataFrame(records, columns=out_cols)).reset_index(drop=True)


def bits_to_target(
    rows: pd.DataFrame, status: pd.DataFrame, target: float | None = None
) -> tuple[pd.DataFrame, float]:
    """Uplink bits each group needs to reach a target metric, within one setting; returns (table, target).

    The default target is half the best method's gain: the mean round-0 metric over ok runs (the
    pretrained model) plus 0.5 x (the best group's final mean over its ok runs - that start). Half,
    not all of it, so that slower methods that do get somewhere are still compared, and the best
    method itself is not measured only at its very last evaluation. An explicit ``target`` replaces it.

    Per group (the group keys): ``n_runs`` (ok runs), ``n_reached`` (ok runs whose metric at some
    evaluated round, round 0 included, is >= target), ``bits_up_to_target_mean`` / ``_sd`` (all
    clients' cumulative uplink, ``bits_up_cum``, at each run's first row reaching the target, over the
    runs that reached it; sd with ddof=1, NaN with one), ``rounds_to_target_mean`` (that row's round)
    and ``target``. A group that never reaches the target keeps NaN. Runs without rows are not
    listed (they carry no setting and reach nothing). Bits are only comparable within
    one setting (model, task, partition, alpha), so rows holding several raise ValueError, as does a
    metric that is not higher-is-better (``results.HIGHER_IS_BETTER``): ">= target" would be wrong.
    """
    out_cols = [
        *GROUP_KEYS,
        "n_runs",
        "n_reached",
        "bits_up_to_target_mean",
        "bits_up_to_target_sd",
        "rounds_to_target_mean",
        "target",
    ]
    settings = rows[list(SETTING_KEYS)].drop_duplicates()
    if len(settings) > 1:
        found = [tuple(r) for r in settings.itertuples(index=False)]
        raise ValueError(
            f"bits_to_target compares one setting {SETTING_KEYS}, rows hold {len(found)} settings: {found}; "
            "select one first (see iter_settings)"
        )
    for name in sorted({str(n) for n in rows["metric_name"].dropna()}):
        if HIGHER_IS_BETTER.get(name) is not True:
            raise ValueError(f"metric {name!r} is not known to be higher-is-better; '>= target' needs one")
    # Only the runs of this setting: ``status`` may cover a whole study when ``rows`` is one setting of
    # it (``iter_settings``). A run without rows has nothing to reach a target with and is left out.
    runs = run_summary(rows, status[status["run_dir"].astype(str).isin(set(rows["run_dir"].astype(str)))])
    check_consistent(runs)
    ok = runs[runs["status"] == "ok"]
    if target is None:
        start = float(ok["start_metric"].mean()) if len(ok) else math.nan
        best = (
            float(ok.groupby(list(GROUP_KEYS), dropna=False)["final_metric"].mean().max())
            if len(ok)
            else math.nan
        )
        if math.isnan(start) or math.isnan(best):
            raise ValueError("no ok run with a round-0 and a final row: no default target; pass target")
        target = start + 0.5 * (best - start)
    by_dir = {str(d): g.sort_values("round") for d, g in rows.groupby("run_dir", sort=False)}
    reached = {}
    for d in ok["run_dir"]:
        g = by_dir.get(str(d))
        hit = g[g["metric"] >= target] if g is not None else None
        if hit is not None and len(hit):
            reached[str(d)] = (float(hit.iloc[0]["bits_up_cum"]), float(hit.iloc[0]["round"]))
    records = []
    for keys, g in runs.groupby(list(GROUP_KEYS), dropna=False, sort=False):
        hits = [reached[d] for d in g.loc[g["status"] == "ok", "run_dir"] if d in reached]
        bits = pd.Series([b for b, _ in hits], dtype=float)
        records.append(
            {
                **dict(zip(GROUP_KEYS, keys, strict=True)),
                "n_runs": int((g["status"] == "ok").sum()),
                "n_reached": len(hits),
                "bits_up_to_target_mean": float(bits.mean()) if len(hits) else math.nan,
                "bits_up_to_target_sd": _sd(bits),
                "rounds_to_target_mean": float(np.mean([r for _, r in hits])) if hits else math.nan,
                "target": target,
            }
        )
    return _sort(pd.DataFrame(records, columns=out_cols)).reset_index(drop=True), float(target)


# --------------------------------------------------------------------------------------------------
# formatting


def pm(mean: float, sd: float, digits: int = 3) -> str:
    """``"0.812 ± 0.010"``; ``"0.812 ± n/a"`` with one seed; ``"—"`` with none."""
    if mean is None or pd.isna(mean):
        return "—"
    if sd is None or pd.isna(sd):
        return f"{mean:.{digits}f} ± n/a"
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def format_bits(bits: float) -> str:
    """Decimal SI units (1 kbit = 1000 bit), three significant digits: ``"318 Mbit"``."""
    if bits is None or pd.isna(bits):
        return "—"
    for unit, scale in (("Tbit", 1e12), ("Gbit", 1e9), ("Mbit", 1e6), ("kbit", 1e3)):
        if abs(bits) >= scale:
            return f"{bits / scale:.3g} {unit}"
    return f"{bits:.3g} bit"


def format_final_table(table: pd.DataFrame, digits: int = 3, extra_keys: Sequence[str] = ()) -> pd.DataFrame:
    """The ``final_metric_table`` as strings for a paper/markdown table (one column per quantity).

    ``extra_keys`` (the table's extra group keys) are shown after the partition; a ``reported``
    column (from ``attach_reported``) is shown last, as ``paper``.
    """
    out = pd.DataFrame(
        {
            "method": table["method"],
            "family": table["family"].astype(str).str.upper(),
            "model": table["model"],
            "task": table["task"],
            "partition": [
                p if pd.isna(a) or np.isinf(a) else f"{p} (α={a:g})"
                for p, a in zip(table["partition"], table["alpha"], strict=True)
            ],
        }
    )
    for key in extra_keys:
        if key == PARAMETERS:  # a count of weights reads better in millions
            out[key] = ["—" if pd.isna(v) else f"{float(v) / 1e6:.1f}M" for v in table[key]]
        else:
            out[key] = [_plain(v) for v in table[key]]
    if (table["label"].fillna("") != "").any():
        out["label"] = table["label"]
    # The robustness columns only where a run has Byzantine clients or a rule other than the mean.
    if (table["byz_frac"].fillna(0) > 0).any() or (table["aggregator"].fillna("mean") != "mean").any():
        out["byzantine"] = [
            "none" if not f else f"{f:g} {a}" for f, a in zip(table["byz_frac"], table["attack"], strict=True)
        ]
        out["rule"] = table["aggregator"]
    out["metric"] = table["metric_name"]
    out["final"] = [pm(m, s, digits) for m, s in zip(table["final_mean"], table["final_sd"], strict=True)]
    out["start"] = ["—" if pd.isna(m) else f"{m:.{digits}f}" for m in table["start_mean"]]
    out["gain"] = [pm(m, s, digits) for m, s in zip(table["gain_mean"], table["gain_sd"], strict=True)]
    out["eval loss: start → final"] = [
        "—" if pd.isna(a) else f"{a:.{digits}f} → {pm(b, s, digits)}"
        for a, b, s in zip(
            table["start_loss_mean"], table["final_loss_mean"], table["final_loss_sd"], strict=True
        )
    ]
    out["seeds ok"] = table["n_seeds"].astype(int)
    out["diverged"] = table["n_diverged"].astype(int)
    out["failed"] = table["n_failed"].astype(int)
    if (table["n_other"] > 0).any():
        out["other"] = table["n_other"].astype(int)
    out["uplink / run"] = [format_bits(b) for b in table["bits_up_per_run"]]
    out["downlink / run"] = [format_bits(b) for b in table["bits_down_per_run"]]
    if "reported" in table.columns:
        out["paper"] = table["reported"].fillna("")
    return out


def _plain(value: Any) -> str:
    # A swept integer read next to a missing value comes back as float (4096.0): print it as 4096.
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def format_communication_table(table: pd.DataFrame) -> pd.DataFrame:
    """The ``communication_table`` as strings."""
    return pd.DataFrame(
        {
            "method": table["method"],
            "family": table["family"].astype(str).str.upper(),
            "model": table["model"],
            "clients / round": table["cohort_size"],
            "uplink / client / round": [format_bits(b) for b in table["bits_up_per_client_round"]],
            "downlink / client / round": [format_bits(b) for b in table["bits_down_per_client_round"]],
            "uplink / round (all)": [format_bits(b) for b in table["bits_up_per_round"]],
            "runs": table["n_runs"],
        }
    )


def to_markdown(df: pd.DataFrame, **kwargs: Any) -> str:
    """GitHub-flavoured markdown of ``df`` without the index; string cells are kept as they are."""
    kwargs.setdefault("index", False)
    # tabulate otherwise re-parses numeric-looking strings and reprints them ("0.810" -> "0.81"),
    # undoing the fixed digits the formatters chose.
    kwargs.setdefault("disable_numparse", True)
    return df.to_markdown(**kwargs) + "\n"


def write_tables(
    table: pd.DataFrame,
    out_csv: str | Path,
    out_md: str | Path | None = None,
    digits: int = 3,
    extra_keys: Sequence[str] = (),
) -> None:
    """Convenience for workflow scripts: raw numbers to CSV, the formatted table to markdown (both
    written atomically)."""
    atomic_write_text(out_csv, table.to_csv(index=False))
    if out_md is not None:
        atomic_write_text(out_md, to_markdown(format_final_table(table, digits, extra_keys=extra_keys)))


# Characters of the formatted tables that LaTeX's default (non-Unicode) engines cannot typeset, replaced
# after pandas has escaped the LaTeX specials (so the "$" and backslashes added here stay commands).
_LATEX_SYMBOLS: dict[str, str] = {
    "±": r"$\pm$",
    "→": r"$\rightarrow$",
    "α": r"$\alpha$",
    "—": "---",
}


def _latex_symbols(text: Any) -> str:
    out = str(text)
    for symbol, command in _LATEX_SYMBOLS.items():
        out = out.replace(symbol, command)
    return out


def write_latex(
    table: pd.DataFrame, path: str | Path, digits: int = 3, extra_keys: Sequence[str] = ()
) -> None:
    """The ``final_metric_table`` as a booktabs LaTeX tabular (needs ``\\usepackage{booktabs}``).

    The cells are ``format_final_table``'s strings, so markdown and LaTeX show the same digits;
    mean ± sd reads ``0.880 $\\pm$ 0.005``. Method names, labels and headers are escaped by pandas'
    own LaTeX writer (``fedavg_lora`` -> ``fedavg\\_lora``), then the few Unicode symbols the
    formatter uses become LaTeX commands. Written atomically: a reader never sees half a table.
    """
    formatted = format_final_table(table, digits, extra_keys)
    styler = formatted.style.hide(axis="index")
    styler = styler.format(_latex_symbols, escape="latex")
    styler = styler.format_index(_latex_symbols, escape="latex", axis="columns")
    atomic_write_text(path, styler.to_latex(hrules=True))


def iter_settings(rows: pd.DataFrame) -> Iterable[tuple[dict[str, Any], pd.DataFrame]]:
    """(setting, rows of that setting) for each (model, task, partition, alpha): one figure each."""
    for keys, g in rows.groupby(list(SETTING_KEYS), dropna=False, sort=True):
        yield dict(zip(SETTING_KEYS, keys, strict=True)), g


# --------------------------------------------------------------------------------------------------
# the papers' numbers beside ours

REPORTED_COLUMNS: tuple[str, ...] = (
    "paper",
    "table",
    "method",
    "model",
    "task",
    "metric",
    "value",
    "source_note",
)
# The papers' method labels (baselines/*/reported.csv) -> zofo method names. FedIT is FedAvg of LoRA
# adapters. Labels absent here (FedZO, "FeedSign minus ZO-FedSGD", ...) name no zofo method.
REPORTED_METHOD_ALIASES: dict[str, str] = {
    "FedKSeed": "fedkseed",
    "FedKSeed-Pro": "fedkseed-pro",
    "FeedSign": "feedsign",
    "ZO-FedSGD": "zo-fedsgd",
    "Ferret": "ferret",
    "FedIT": "fedavg-lora",
    "FedAvg": "fedavg",
    "one-shot FL": "oneshot",
}
# The papers' model labels -> the hub ids that the paper-scale configs (baselines/*/config*.yaml) put in
# model.name, which is what a run's ``model`` column holds. LLaMA-3B, 7B and 13B have no config.
REPORTED_MODEL_ALIASES: dict[str, str] = {
    "DataJuicer-1.3B": "datajuicer/LLaMA-1B-dj-refine-150B",  # fedkseed/, ferret/config.yaml
    "RoBERTa-large": "FacebookAI/roberta-large",  # feedsign/config.yaml
    "OPT-13B": "facebook/opt-13b",  # feedsign/config-opt13b.yaml
}
# The papers' task labels -> a run's ``task`` column (task.name in the configs). ``hub-classification``
# names no dataset, so this mapping alone would be ambiguous; the metric is part of the match and keeps
# it sound: the papers score Dolly-15K by Rouge-L of generated answers, the configs' Dolly stand-in by
# accuracy, so today no Dolly number attaches to a stand-in row (the READMEs: not comparable).
REPORTED_TASK_ALIASES: dict[str, str] = {
    "Dolly-15K": "hub-classification",  # fedkseed/, ferret/, oneshot/config.yaml (dataset dolly-15k)
}


def load_reported(baselines_dir: str | Path) -> pd.DataFrame:
    """Every ``<baselines_dir>/*/reported.csv`` in one frame (folders in name order), columns
    ``REPORTED_COLUMNS``; raises ValueError naming a file that lacks one of them."""
    frames = []
    for csv in sorted(Path(baselines_dir).glob("*/reported.csv")):
        df = pd.read_csv(csv)
        missing = [c for c in REPORTED_COLUMNS if c not in df.columns]
        if missing:
            raise ValueError(f"{csv}: no column(s) {missing}")
        frames.append(df[list(REPORTED_COLUMNS)])
    if not frames:
        return pd.DataFrame(columns=list(REPORTED_COLUMNS))
    return pd.concat(frames, ignore_index=True)


def attach_reported(
    final: pd.DataFrame,
    reported: pd.DataFrame,
    aliases: Mapping[str, str] | None = None,
    *,
    model_aliases: Mapping[str, str] | None = None,
    task_aliases: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """A copy of ``final`` with a column ``reported``: the papers' numbers for the same experiment.

    A reported row matches a row of ``final`` when its method, model, task and metric, translated by
    ``aliases`` (method labels, default ``REPORTED_METHOD_ALIASES``), ``model_aliases`` and
    ``task_aliases`` (defaults ``REPORTED_MODEL_ALIASES`` / ``REPORTED_TASK_ALIASES``; a label absent
    from a map stands for itself), equal the row's ``method``, ``model``, ``task`` and
    ``metric_name``. So a reported quantity that zofo does not measure (a communication bound, an
    accuracy gap) never matches. Each match reads ``"30.91 (ferret, Table 2)"``: the value as the
    paper gives it (Rouge-L in points where zofo's is in [0, 1]) and its source; several matches
    (one number quoted by two papers) are joined by ``"; "``; rows without one get ``""``.
    """
    methods = REPORTED_METHOD_ALIASES if aliases is None else aliases
    models = REPORTED_MODEL_ALIASES if model_aliases is None else model_aliases
    tasks = REPORTED_TASK_ALIASES if task_aliases is None else task_aliases
    texts: dict[tuple[str, str, str, str], list[str]] = {}
    for r in reported.to_dict("records"):
        key = (
            methods.get(r["method"], r["method"]),
            models.get(r["model"], r["model"]),
            tasks.get(r["task"], r["task"]),
            r["metric"],
        )
        text = f"{float(r['value']):g} ({r['paper']}, {r['table']})"
        if text not in texts.setdefault(key, []):
            texts[key].append(text)
    out = final.copy()
    out["reported"] = [
        "; ".join(texts.get((str(m), str(mo), str(t), str(n)), []))
        for m, mo, t, n in zip(
            final["method"], final["model"], final["task"], final["metric_name"], strict=True
        )
    ]
    return out
