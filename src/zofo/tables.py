"""Tables from run folders: final metric per method and setting, and measured communication.

Inputs are the two frames of ``zofo.results.load_runs``: ``rows`` (one row per evaluation point, every
status) and ``status`` (one row per run folder). Runs whose status is not ``ok`` never enter a mean,
but every table counts them, so a method that diverged on half its seeds cannot look as good as one
that did not. A run that failed before writing any row is still counted, from its ``meta.json``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from zofo.results import COLUMN_DEFAULTS

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
FAMILY_ORDER: dict[str, int] = {"fo": 0, "zo": 1}
# Config keys that may differ between seeds of one experiment without changing what is measured.
SEED_FREE_IGNORED: frozenset[str] = frozenset({"seed", "threads", "assets_dir"})


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


def check_consistent(runs: pd.DataFrame) -> None:
    """Raise ValueError where runs that a table would average are not one experiment.

    ``runs`` is ``run_summary``'s frame. Two checks, both within one table group (method, family,
    model, task, partition, alpha, label), so that one label may span several models or tasks.
    (1) One seed must map to one ``config_hash`` and one folder: otherwise two configurations (or one
    run twice) would be averaged as if they were seeds. (2) The configs read from ``meta.json`` must
    agree on every key except seed, threads and assets_dir; the hash includes the seed, so check (1)
    alone cannot see e.g. a learning rate that differs between seeds. Folders without a readable
    meta.json skip check (2).
    """
    if runs.empty:
        return
    for keys, g in runs.groupby([*GROUP_KEYS, "seed"], dropna=False, sort=True):
        where = _describe(keys[:-1]) + f" seed {keys[-1]}"
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
    for keys, g in runs.groupby(list(GROUP_KEYS), dropna=False, sort=True):
        configs = {}
        for d in g["run_dir"]:
            meta = read_meta(d)
            if meta is not None and "config" in meta:
                configs[d] = _flatten({k: v for k, v in meta["config"].items() if k not in SEED_FREE_IGNORED})
        if len(configs) < 2:
            continue
        ref_dir, ref = next(iter(configs.items()))
        for d, cfg in configs.items():
            diff = sorted(k for k in ref.keys() | cfg.keys() if ref.get(k) != cfg.get(k))
            if diff:
                detail = ", ".join(f"{k}: {ref.get(k)} vs {cfg.get(k)}" for k in diff)
                raise ValueError(
                    f"{_describe(keys)}: runs {ref_dir} and {d} differ in more than the seed ({detail}); "
                    "give them different labels or load them separately"
                )


def _describe(keys: tuple[Any, ...]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in zip(GROUP_KEYS, keys, strict=True))


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, Mapping):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): json.dumps(obj, sort_keys=True)}


# --------------------------------------------------------------------------------------------------
# one row per run


def run_summary(rows: pd.DataFrame, status: pd.DataFrame) -> pd.DataFrame:
    """One row per run folder in ``status``: group keys, seed, status, start/final metric, total bits.

    ``start_metric`` is the round-0 row (NaN if the run has none), ``final_metric`` the last evaluated
    round; for a diverged run that is its last evaluation before divergence, which tables never
    average but figures mark.
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
            rec.update({k: first[k] for k in GROUP_KEYS})
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


def _sort(df: pd.DataFrame) -> pd.DataFrame:
    # Within each setting: FO methods first, then ZO, then anything else, each by name.
    order = df["family"].map(lambda f: FAMILY_ORDER.get(str(f).lower(), len(FAMILY_ORDER)))
    df = df.assign(_family_order=order)
    keys = [*SETTING_KEYS, "label", "_family_order", "method", "byz_frac", "aggregator"]
    return df.sort_values(keys, kind="stable", na_position="last").drop(columns="_family_order")


def _sd(x: pd.Series) -> float:
    return float(x.std(ddof=1)) if len(x) > 1 else math.nan


# --------------------------------------------------------------------------------------------------
# tables


def final_metric_table(rows: pd.DataFrame, status: pd.DataFrame) -> pd.DataFrame:
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
    """
    runs = run_summary(rows, status)
    check_consistent(runs)
    out_cols = [
        *GROUP_KEYS,
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
    for keys, g in runs.groupby(list(GROUP_KEYS), dropna=False, sort=False):
        ok = g[g["status"] == "ok"]
        names = sorted({str(n) for n in g["metric_name"].dropna()})
        if len(names) > 1:
            raise ValueError(f"{_describe(keys)}: runs report different metrics {names}")
        gain = ok["final_metric"] - ok["start_metric"]
        records.append(
            {
                **dict(zip(GROUP_KEYS, keys, strict=True)),
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
    return _sort(pd.DataFrame(records, columns=out_cols)).reset_index(drop=True)


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

    The check against the methods' formulas (METHODS.md section 6): ``formula_up`` / ``formula_down``
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


def format_final_table(table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """The ``final_metric_table`` as strings for a paper/markdown table (one column per quantity)."""
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
    return out


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
    table: pd.DataFrame, out_csv: str | Path, out_md: str | Path | None = None, digits: int = 3
) -> None:
    """Convenience for workflow scripts: raw numbers to CSV, the formatted table to markdown."""
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_csv, index=False)
    if out_md is not None:
        Path(out_md).write_text(to_markdown(format_final_table(table, digits)))


def iter_settings(rows: pd.DataFrame) -> Iterable[tuple[dict[str, Any], pd.DataFrame]]:
    """(setting, rows of that setting) for each (model, task, partition, alpha): one figure each."""
    for keys, g in rows.groupby(list(SETTING_KEYS), dropna=False, sort=True):
        yield dict(zip(SETTING_KEYS, keys, strict=True)), g
