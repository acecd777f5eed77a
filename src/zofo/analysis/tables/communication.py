"""Communication: measured bits per client and round against each method's formula, and the bits each
group needed to reach a target metric."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from zofo.analysis import stats
from zofo.analysis.tables.keys import GROUP_KEYS, SETTING_KEYS, iter_settings, sort_rows
from zofo.engine.record import HIGHER_IS_BETTER

COMMUNICATION_COLUMNS: tuple[str, ...] = (
    "cohort_size",
    "n_runs",
    "bits_up_per_client_round",
    "bits_down_per_client_round",
    "catch_up_per_client_round",
    "bits_up_per_round",
    "per_run_spread",
    "formula_up",
    "formula_down",
    "matches_formula",
    "up_vs_fedavg",
)


def communication_table(runs: pd.DataFrame, grid: Sequence[str] = ()) -> pd.DataFrame:
    """Measured bits per client and round, per group (the group keys and the ``grid`` columns).

    Per run of ``run_table`` that trained a round, of every status (the bits a diverged run sent before
    its last evaluation are as real as those of an ok run): its ``bits_*_per_client_round``. Columns:
    group keys, grid columns, ``cohort_size``, ``n_runs``, ``bits_up_per_client_round``,
    ``bits_down_per_client_round`` (means over runs; the downlink includes the catch-up),
    ``catch_up_per_client_round`` (the part of that downlink which clients returning after missed rounds
    downloaded first: ``bits_catch_up_total`` over rounds and cohort; 0 under full participation),
    ``bits_up_per_round`` (all clients of a round) and ``per_run_spread`` (max - min of the uplink
    figure across runs; 0 when payload sizes are fixed).

    The check against the methods' formulas: ``formula_up`` / ``formula_down`` are what each method's
    ``formula_bits`` gave for the run's model and cohort (recorded by the engine from parameters and
    sizes, never from payloads), ``matches_formula`` whether every run's counted bits equal them
    exactly, the downlink without its catch-up, which no per-round formula holds (empty when a run has
    no formula, e.g. one written by a workflow rule), and
    ``up_vs_fedavg`` the uplink as a fraction of FedAvg's in the same model, task and label (empty
    without a FedAvg run). A round whose payloads were rejected broadcasts less (or nothing): its
    counts are real but are not the formula's full-cohort round, so such runs are not checked. A run
    without a cohort size raises ValueError rather than guess.
    """
    group_keys = [*GROUP_KEYS, *grid]
    columns = [*group_keys, *COMMUNICATION_COLUMNS]
    trained = runs[runs["final_round"].fillna(0).astype(float) > 0] if len(runs) else runs
    if trained.empty:
        return pd.DataFrame(columns=columns)
    unknown = trained[trained["cohort_size"].isna()]
    if len(unknown):
        raise ValueError(
            f"runs without a cohort size (no readable meta.json config): {sorted(unknown['run_dir'])}"
        )
    checked = trained["rejected_total"].fillna(0) == 0
    formula_up = trained["formula_up"].where(checked)
    formula_down = trained["formula_down"].where(checked)
    has_formula = formula_up.notna() | formula_down.notna()
    # A run table written before catch-up was counted has no column: those runs caught up on nothing.
    catch_up = trained["bits_catch_up_total"].fillna(0) if "bits_catch_up_total" in trained else 0
    # Divided in the run table's order: a run without catch-up compares exactly its downlink figure.
    rounds, cohort = trained["final_round"], trained["cohort_size"]
    broadcast_down = (trained["bits_down_total"] - catch_up) / rounds / cohort
    match = (trained["bits_up_per_client_round"] == formula_up) & (broadcast_down == formula_down)
    per_run = trained.assign(
        _formula_up=formula_up,
        _formula_down=formula_down,
        _match=match.where(has_formula, None),
        _catch_up=catch_up / rounds / cohort,
    )
    records = []
    for keys, g in per_run.groupby(group_keys, dropna=False, sort=False):
        up = g["bits_up_per_client_round"].astype(float)
        records.append(
            {
                **dict(zip(group_keys, keys, strict=True)),
                "cohort_size": ",".join(str(int(c)) for c in sorted(set(g["cohort_size"]))),
                "n_runs": len(g),
                "bits_up_per_client_round": stats.mean(up),
                "bits_down_per_client_round": stats.mean(g["bits_down_per_client_round"]),
                "catch_up_per_client_round": stats.mean(g["_catch_up"]),
                "bits_up_per_round": stats.mean(g["bits_up_per_round"]),
                "per_run_spread": float(up.max() - up.min()),
                "formula_up": _single(g["_formula_up"]),
                "formula_down": _single(g["_formula_down"]),
                "matches_formula": None if g["_match"].isna().any() else bool(g["_match"].all()),
            }
        )
    out = pd.DataFrame(records, columns=columns)
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
    return sort_rows(out, grid).reset_index(drop=True)


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
            f"{r['bits_down_per_client_round']:g} down per client and round"
            + (
                f" (catch-up {r['catch_up_per_client_round']:g} of it)"
                if r["catch_up_per_client_round"]
                else ""
            )
            + f", formula {r['formula_up']} / {r['formula_down']}"
            for r in bad.to_dict("records")
        ]
        raise ValueError("bits on the wire differ from the methods' formulas:\n  " + "\n  ".join(lines))


TARGET_COLUMNS: tuple[str, ...] = (
    "n_runs",
    "n_reached",
    "bits_up_to_target_mean",
    "bits_up_to_target_sd",
    "rounds_to_target_mean",
    "target",
)


def bits_to_target(
    runs: pd.DataFrame, curves: pd.DataFrame, grid: Sequence[str] = (), target: float | None = None
) -> tuple[pd.DataFrame, float]:
    """Uplink bits each group needs to reach a target metric, within one setting; returns (table, target).

    ``runs`` and ``curves`` are ``run_table`` and ``curve_table`` frames; runs without an evaluated
    round are left out (they carry no setting and reach nothing). The default target is
    ``stats.half_gain_target`` of the pretrained level (``stats.pretrained_level`` over the ok runs)
    and the best group's final mean; an explicit ``target`` replaces it.

    Per group (the group keys and the ``grid`` columns): ``n_runs`` (ok runs), ``n_reached`` (ok runs
    that reach the target at some evaluated round, round 0 included: ``stats.first_reach``),
    ``bits_up_to_target_mean`` / ``_sd`` (all clients' cumulative uplink at each run's first row
    reaching it, over the runs that reached it; sd with ddof=1, NaN with one),
    ``rounds_to_target_mean`` (that row's round) and ``target``. A group that never reaches the target
    keeps NaN. Bits are only comparable within one setting (model, task, partition, alpha), so runs of
    several raise ValueError, as does a metric that is not higher-is-better
    (``zofo.engine.record.HIGHER_IS_BETTER``): ">= target" would be wrong.
    """
    group_keys = [*GROUP_KEYS, *grid]
    runs = runs[runs["final_round"].notna()]
    settings = runs[list(SETTING_KEYS)].drop_duplicates()
    if len(settings) > 1:
        found = [tuple(r) for r in settings.itertuples(index=False)]
        raise ValueError(
            f"bits_to_target compares one setting {SETTING_KEYS}, runs hold {len(found)} settings: {found}; "
            "select one first (see iter_settings)"
        )
    for name in sorted({str(n) for n in runs["metric_name"].dropna()}):
        if HIGHER_IS_BETTER.get(name) is not True:
            raise ValueError(f"metric {name!r} is not known to be higher-is-better; '>= target' needs one")
    ok = runs[runs["status"] == "ok"]
    if target is None:
        best = (
            max(stats.mean(g["final_metric"]) for _, g in ok.groupby(group_keys, dropna=False))
            if len(ok)
            else math.nan
        )
        start = stats.pretrained_level(ok["start_metric"])
        if math.isnan(start) or math.isnan(best):
            raise ValueError("no ok run with a round-0 and a final row: no default target; pass target")
        target = stats.half_gain_target(start, best)
    by_dir = {str(d): g for d, g in curves.groupby("run_dir", sort=False)}
    reached = {}
    for d in ok["run_dir"].astype(str):
        hit = stats.first_reach(by_dir[d], target) if d in by_dir else None
        if hit is not None:
            reached[d] = hit
    records = []
    for keys, g in runs.groupby(group_keys, dropna=False, sort=False):
        hits = [reached[d] for d in g.loc[g["status"] == "ok", "run_dir"].astype(str) if d in reached]
        records.append(
            {
                **dict(zip(group_keys, keys, strict=True)),
                "n_runs": int((g["status"] == "ok").sum()),
                "n_reached": len(hits),
                "bits_up_to_target_mean": stats.mean(b for b, _ in hits),
                "bits_up_to_target_sd": stats.sd(b for b, _ in hits),
                "rounds_to_target_mean": stats.mean(r for _, r in hits),
                "target": target,
            }
        )
    table = pd.DataFrame(records, columns=[*group_keys, *TARGET_COLUMNS])
    return sort_rows(table, grid).reset_index(drop=True), float(target)


def bits_to_target_by_setting(
    runs: pd.DataFrame, curves: pd.DataFrame, grid: Sequence[str] = ()
) -> pd.DataFrame:
    """``bits_to_target`` for every setting of ``runs``, each with its own default target, one table."""
    measured = runs[runs["final_round"].notna()]
    parts = [bits_to_target(part, curves, grid)[0] for _, part in iter_settings(measured)]
    if not parts:
        return pd.DataFrame(columns=[*GROUP_KEYS, *grid, *TARGET_COLUMNS])
    return pd.concat(parts, ignore_index=True)
