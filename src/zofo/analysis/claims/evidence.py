"""The evidence a claims table is built from (the tables of one config), and how claims pick groups
out of it: one row per method and setting, never an average of two."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from zofo.analysis import stats
from zofo.analysis.claims.rules import NON_IID_ALPHA, OWN_RULES, Group, Missing, Z, signed
from zofo.analysis.load import PARAMETERS
from zofo.analysis.stats import Estimate
from zofo.analysis.tables.keys import GROUP_KEYS
from zofo.analysis.tables.runs import read_table

NAMES: dict[str, str] = {
    "fedavg": "FedAvg",
    "fedavg-lora": "FedIT (fedavg-lora)",
    "oneshot": "one-shot",
    "ferret": "Ferret",
    "fedkseed": "FedKSeed",
    "fedkseed-pro": "FedKSeed-Pro",
    "feedsign": "FeedSign",
    "zo-fedsgd": "ZO-FedSGD",
}

MAIN = "main study"
COMM = "main study's communication table"
COST = "cost study (client seconds per round)"
TARGET = "rounds-to-target study"
HETERO = "heterogeneity study (several Dirichlet alphas)"
BYZ = "Byzantine study"
ONESHOT = "one-shot model-size study"


@dataclass(frozen=True, eq=False)  # eq=False: a generated __eq__/__hash__ would compare DataFrames
class Evidence:
    """The measured tables a claims table is built from; an optional study is None where not run.

    ``main``: ``final_metric_table`` of the main study. ``comm``: its ``communication_table``.
    ``cost``: method, n_seeds, client_seconds_per_round_mean/_sd, server_seconds_per_round_mean,
    peak_rss_mb_mean. ``to_target``: method, n_runs, n_reached, bits_up_to_target_mean,
    rounds_to_target_mean, target. ``heterogeneity``: ``final_metric_table`` over several alphas
    (inf = iid). ``byzantine``: ``final_metric_table`` over byz_frac and aggregator (honest runs have
    byz_frac 0). ``oneshot``: ``gap_table`` of the one-shot study (FedAvg minus one-shot per model
    size, ``parameters``, and alpha).
    """

    main: pd.DataFrame
    comm: pd.DataFrame
    cost: pd.DataFrame | None = None
    to_target: pd.DataFrame | None = None
    heterogeneity: pd.DataFrame | None = None
    byzantine: pd.DataFrame | None = None
    oneshot: pd.DataFrame | None = None


def need(frame: pd.DataFrame | None, study: str) -> pd.DataFrame:
    if frame is None:
        raise Missing(f"this config has no {study}")
    return frame


def honest(df: pd.DataFrame) -> pd.DataFrame:
    """Rows without Byzantine clients, under each method's own rule (columns absent: nothing to drop)."""
    keep = pd.Series(True, index=df.index)
    if "byz_frac" in df.columns:
        keep &= df["byz_frac"].fillna(0.0).astype(float) == 0.0
    if "aggregator" in df.columns:
        keep &= df["aggregator"].fillna("mean").isin(OWN_RULES)
    return df[keep]


def alpha_text(alpha: float) -> str:
    return "iid" if math.isinf(alpha) else f"Dirichlet alpha {alpha:g}"


def where_text(filters: dict[str, object]) -> str:
    parts = [
        alpha_text(float(v)) if k == "alpha" else f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
        for k, v in filters.items()
    ]
    return f" at {', '.join(parts)}" if parts else ""


def select(df: pd.DataFrame, method: str, study: str, **filters: object) -> pd.Series:
    """The one row of ``method`` matching ``filters`` (columns the frame lacks are not filtered on)."""
    rows = df[df["method"] == method]
    for col, val in filters.items():
        if col in rows.columns:
            rows = rows[rows[col] == val]
    if rows.empty:
        raise Missing(f"the {study} has no {NAMES.get(method, method)} ({method}) runs{where_text(filters)}")
    if len(rows) > 1:
        # Averaging two groups would mix settings, so an ambiguous selection is reported, not resolved.
        columns = [c for c in (*GROUP_KEYS, PARAMETERS) if c in rows.columns]
        keys = [c for c in columns if rows[c].nunique(dropna=False) > 1]
        raise Missing(
            f"the {study} has {len(rows)} {method} groups{where_text(filters)}, differing in "
            f"{', '.join(keys) or 'columns outside the group keys'}; the claim needs one"
        )
    return rows.iloc[0]


def group(df: pd.DataFrame, method: str, study: str, **filters: object) -> Group:
    row = select(df, method, study, **filters)
    n = int(row["n_seeds"])
    mean = float(row["final_mean"])
    if n == 0 or not math.isfinite(mean):
        where = where_text(filters)
        raise Missing(f"every {method} run in the {study}{where} diverged or failed (0 ok seeds)")
    sd = float(row["final_sd"]) if "final_sd" in row.index and pd.notna(row["final_sd"]) else math.nan
    return Group(mean, sd, n)


def learns(df: pd.DataFrame, method: str, study: str, **filters: object) -> tuple[bool, str]:
    """Whether ``method`` improves on the pretrained model in this cell beyond 2 standard errors of its
    gain over seeds; a robustness claim about a method that does not learn is vacuous."""
    row = select(df, method, study, **filters)
    if not {"gain_mean", "gain_sd"} <= set(row.index):
        return True, ""  # no gain columns: nothing to say
    n, gain, sd = int(row["n_seeds"]), float(row["gain_mean"]), float(row["gain_sd"])
    if n < 2 or not math.isfinite(sd):
        return True, ""  # the comparison's own rule reports the unknown se
    se = stats.se(sd, n)
    name = NAMES.get(method, method)
    text = f"{name}'s gain over the pretrained model is {signed(gain)} (2 se {Z * se:.3g})"
    return gain > Z * se, text


def reference_alpha(df: pd.DataFrame) -> float:
    """The main study's alpha for its claims: 0.5 (FeedSign's) if run, else the most skewed, else iid."""
    fair = honest(df)
    if fair.empty:
        raise Missing(f"the {MAIN} has no honest runs")
    alphas = {float(a) for a in fair["alpha"]}
    finite = sorted(a for a in alphas if math.isfinite(a))
    if NON_IID_ALPHA in alphas:
        return NON_IID_ALPHA
    return finite[0] if finite else math.inf


def setting_text(row: pd.Series) -> str:
    bits = [str(row[c]) for c in ("model", "task") if c in row.index and pd.notna(row[c])]
    return f" ({', '.join(bits)})" if bits else ""


def comm_values(comm: pd.DataFrame, method: str, col: str) -> list[float]:
    rows = honest(comm)
    rows = rows[rows["method"] == method]
    if rows.empty:
        raise Missing(f"the {COMM} has no {NAMES[method]} ({method}) rows")
    return sorted({float(v) for v in rows[col]})


def comm_value(comm: pd.DataFrame, method: str, col: str) -> float:
    values = comm_values(comm, method, col)
    if len(values) > 1:
        raise Missing(f"{method}'s {col} differs across groups of the {COMM} ({bits_list(values)})")
    return values[0]


def bits(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:,.2f}"


def bits_list(values: Iterable[float]) -> str:
    return " / ".join(bits(v) for v in values)


def sci(x: float) -> str:
    """``4.33e5``: three significant digits without the ``e+05`` noise."""
    if not math.isfinite(x) or x == 0:
        return f"{x:g}"
    exp = math.floor(math.log10(abs(x)))
    mant = x / 10**exp
    if round(abs(mant), 2) >= 10:  # 9.996 rounds to 10.0: carry into the exponent
        mant, exp = mant / 10, exp + 1
    return f"{mant:.3g}e{exp}"


def pair(main: pd.DataFrame, a: str, b: str) -> tuple[Group, Group, float, str]:
    """Groups of ``a`` and ``b`` at the main study's reference alpha, and a description of the setting."""
    fair = honest(main)
    alpha = reference_alpha(main)
    ga, gb = group(fair, a, MAIN, alpha=alpha), group(fair, b, MAIN, alpha=alpha)
    row = select(fair, a, MAIN, alpha=alpha)
    return ga, gb, alpha, f"{alpha_text(alpha)}{setting_text(row)}"


def versus(main: pd.DataFrame, a: str, b: str) -> tuple[Estimate, str]:
    """d = a - b at the main study's alpha, and an evidence sentence quoting both groups."""
    ga, gb, _, where = pair(main, a, b)
    d = ga.est - gb.est
    return d, (
        f"Main study, {where}: {NAMES[a]} {ga}, {NAMES[b]} {gb}; difference {signed(d.value)}, se {d.se:.3g}."
    )


# --------------------------------------------------------------------------------------------------
# from files

# The main study's tables a claims table reads, and the studies' (each optional), by Evidence field.
MAIN_TABLES: tuple[str, ...] = ("main", "comm", "cost", "to_target")
STUDY_TABLES: tuple[str, ...] = ("heterogeneity", "byzantine", "oneshot")


def largest_model(main: pd.DataFrame) -> str:
    """The model of the main table with the most weights (its ``parameters`` column, the pretrained
    model's size), or its only model; ValueError when several models and no sizes."""
    models = sorted(set(main["model"].astype(str)))
    if len(models) == 1:
        return models[0]
    if PARAMETERS not in main.columns or main[PARAMETERS].isna().all():
        raise ValueError(
            f"the main table holds models {models} but no {PARAMETERS!r} column to tell the largest"
        )
    return str(main.loc[main[PARAMETERS].astype(float).idxmax(), "model"])


def read_evidence(paths: Mapping[str, str | Path]) -> tuple[Evidence, str]:
    """The evidence from table files (Evidence field -> CSV path; the studies' may be absent), and the
    model the main study's claims read.

    A main study over model sizes speaks for the papers' claims at its largest model (the papers'
    claims are about the largest models they ran), so its tables are cut to that model; the one-shot
    study covers how a gap changes with size.
    """
    unknown = set(paths) - {*MAIN_TABLES, *STUDY_TABLES}
    if unknown:
        raise ValueError(f"no evidence is called {sorted(unknown)}; allowed: {[*MAIN_TABLES, *STUDY_TABLES]}")
    main = {name: read_table(paths[name]) for name in MAIN_TABLES}
    model = largest_model(main["main"])
    at_model = {name: frame[frame["model"].astype(str) == model] for name, frame in main.items()}
    studies = {name: read_table(paths[name]) for name in STUDY_TABLES if name in paths}
    return Evidence(**at_model, **studies), model
