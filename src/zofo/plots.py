"""Figures with one shared style: metric vs round / uplink bits, and final metric per method.

Every figure is built on a bare ``matplotlib.figure.Figure`` (never pyplot), so importing this module
neither selects nor changes the process's backend and figures are never registered with a GUI; saving
renders with Agg (PNG) and the PDF backend. Each figure is written twice: ``out_png`` and the PDF of the
same stem next to it.

A method keeps its colour in every figure (``METHOD_COLORS``; unknown names get a fallback colour
from a hash of the name, so also stable). The family sets the line: FO solid with circles, ZO dashed
with triangles. Runs that did not end ``ok`` never enter a mean line or band but are drawn and marked.
"""

from __future__ import annotations

import contextlib
import math
import textwrap
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from zofo.results import HIGHER_IS_BETTER
from zofo.tables import FAMILY_ORDER, SETTING_KEYS

RC: dict[str, Any] = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 8.5,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.8,
    "lines.markersize": 5,
    "legend.frameon": False,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.05,
    # TrueType in the PDF: text stays text (searchable, editable), not Type-3 glyph outlines.
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
}

# Okabe-Ito colours (distinguishable with the common colour-vision deficiencies); FO methods blues,
# ZO methods warm/green, so the family also reads from colour.
METHOD_COLORS: dict[str, str] = {
    "fedavg": "#0072B2",
    "feedsign": "#D55E00",
    "zo-fedsgd": "#009E73",
    "fedkseed": "#CC79A7",
    "fedkseed-pro": "#882255",
    "ferret": "#E69F00",
    "fedavg-lora": "#56B4E9",
    "oneshot": "#1F3A93",
    "fedzo": "#8C564B",
}
FALLBACK_COLORS: tuple[str, ...] = (
    "#7F7F7F",
    "#BCBD22",
    "#17BECF",
    "#9467BD",
    "#E377C2",
    "#2CA02C",
    "#FF7F0E",
)
FAMILY_STYLE: dict[str, dict[str, Any]] = {
    "fo": {"linestyle": "-", "marker": "o"},
    "zo": {"linestyle": "--", "marker": "^"},
}
OTHER_FAMILY_STYLE: dict[str, Any] = {"linestyle": ":", "marker": "s"}
# Where a run that did not finish ok ended; "diverged" is the one the benchmark is about.
END_MARKERS: dict[str, dict[str, Any]] = {
    "diverged": {"marker": "x", "markersize": 9, "markeredgewidth": 2.2},
    "other": {"marker": "D", "markersize": 6, "markeredgewidth": 1.5, "markerfacecolor": "none"},
}
X_LABELS = {
    "round": "communication round",
    "bits_up_cum": "cumulative uplink bits, all clients",
    "bits_down_cum": "cumulative downlink bits, all clients",
}
# At most this many markers per line, so long runs stay lines rather than marker chains.
MAX_MARKERS = 12


@contextlib.contextmanager
def style() -> Iterator[None]:
    """The shared rcParams; figures must be created inside (rcParams apply when artists are made)."""
    with mpl.rc_context(RC):
        yield


def method_color(method: str) -> str:
    """The method's fixed colour, or a fallback chosen by a stable hash of its name."""
    if method in METHOD_COLORS:
        return METHOD_COLORS[method]
    return FALLBACK_COLORS[zlib.crc32(method.encode()) % len(FALLBACK_COLORS)]


def family_style(family: str | None) -> dict[str, Any]:
    return dict(FAMILY_STYLE.get(str(family).lower(), OTHER_FAMILY_STYLE))


def save(fig: Figure, out_png: str | Path) -> tuple[Path, Path]:
    """Write ``out_png`` and the PDF of the same stem; returns both paths."""
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    out_pdf = out_png.with_suffix(".pdf")
    fig.savefig(out_png, format="png")
    fig.savefig(out_pdf, format="pdf")
    return out_png, out_pdf


def _fmt_alpha(alpha: Any) -> str:
    return "" if pd.isna(alpha) or math.isinf(float(alpha)) else f" (α={float(alpha):g})"


def _setting_text(df: pd.DataFrame) -> str:
    s = df.iloc[0]
    return f"{s['model']} · {s['task']} · partition {s['partition']}{_fmt_alpha(s['alpha'])}"


def _seeds_text(seeds: Sequence[Any]) -> str:
    seeds = sorted({int(s) for s in seeds})
    return ",".join(map(str, seeds)) if len(seeds) <= 10 else f"{seeds[0]}…{seeds[-1]} ({len(seeds)})"


def _metric_label(metric_name: str) -> str:
    better = HIGHER_IS_BETTER.get(metric_name)
    arrow = "" if better is None else (" (↑ better)" if better else " (↓ better)")
    return f"{metric_name}{arrow}"


def _series_order(df: pd.DataFrame) -> list[tuple[str, str, str]]:
    keys = df[["family", "method", "label"]].drop_duplicates().astype(str).itertuples(index=False)
    return sorted(keys, key=lambda k: (FAMILY_ORDER.get(k[0].lower(), len(FAMILY_ORDER)), k[1], k[2]))


def _wrap(notes: Sequence[str], fig: Figure) -> str:
    # ~15 characters of 7.5 pt text per inch keeps the caption within the figure's width.
    width = max(60, int(fig.get_figwidth() * 15))
    return "\n".join(textwrap.fill(n, width) for n in notes)


def _markevery(n: int) -> int:
    return max(1, math.ceil(n / MAX_MARKERS))


def convergence(
    rows: pd.DataFrame,
    x: str,
    out_png: str | Path,
    title: str | None = None,
    *,
    band: str = "minmax",
    status: pd.DataFrame | None = None,
) -> tuple[Path, Path]:
    """Metric vs ``x`` for one setting: mean over ok seeds per method, with a band across seeds.

    ``rows`` is ``load_runs``'s rows frame (it must carry ``status`` and ``run_dir``), restricted to
    one (model, task, partition, alpha) with one metric; ValueError otherwise (see
    ``zofo.tables.iter_settings``). ``x`` is ``"round"``, ``"bits_up_cum"`` or ``"bits_down_cum"``;
    bits axes are logarithmic, and since round 0 has 0 bits it is drawn at a left edge one decade
    below the first non-zero value, with its tick labelled 0 (the caption says so). On bits axes the
    x of a round is the mean over seeds of the cumulative bits at that round (equal across seeds when
    payload sizes are fixed). ``band`` is ``"minmax"`` (range over seeds) or ``"sd"`` (mean ± sd).
    Runs not ``ok`` are drawn thin, outside the mean, with a marker at their last evaluation
    (× diverged, ◇ failed/other). ``status`` (optional) adds runs that have no rows at all to the
    caption's count. Returns the PNG and PDF paths.
    """
    if x not in X_LABELS:
        raise ValueError(f"x must be one of {sorted(X_LABELS)}, not {x!r}")
    if band not in ("minmax", "sd"):
        raise ValueError(f"band must be 'minmax' or 'sd', not {band!r}")
    for col in ("status", "run_dir"):
        if col not in rows.columns:
            raise ValueError(f"rows need a {col!r} column (use zofo.results.load_runs)")
    if rows.empty:
        raise ValueError("no rows to plot")
    settings = rows[list(SETTING_KEYS)].drop_duplicates()
    if len(settings) > 1:
        raise ValueError(
            f"rows span {len(settings)} settings {settings.to_dict('records')}; plot one at a time "
            "(zofo.tables.iter_settings)"
        )
    metric_names = sorted(set(rows["metric_name"].astype(str)))
    if len(metric_names) > 1:
        raise ValueError(f"rows mix metrics {metric_names}")

    log_x = x != "round"
    rows = rows.sort_values("round")
    positive = rows.loc[rows[x] > 0, x]
    x0 = 10.0 ** (math.floor(math.log10(positive.min())) - 1) if log_x and len(positive) else None

    def xs(values: pd.Series) -> np.ndarray:
        v = values.to_numpy(dtype=float)
        return np.where(v > 0, v, x0) if x0 is not None else v

    series = _series_order(rows)
    several_labels = rows["label"].astype(str).nunique() > 1
    ended: dict[str, list[str]] = {}
    with style():
        fig = Figure(figsize=(6.4, 4.4))
        ax = fig.add_subplot()
        handles: list[Any] = []
        for family, method, label in series:
            s_rows = rows[(rows["method"] == method) & (rows["label"].astype(str) == label)]
            color, fstyle = method_color(method), family_style(family)
            name = f"{method} [{label}]" if several_labels and label else method
            ok = s_rows[s_rows["status"] == "ok"]
            n_ok = ok["run_dir"].nunique()
            if n_ok:
                metric = ok.pivot_table(index="round", columns="run_dir", values="metric", aggfunc="first")
                xv = ok.groupby("round")[x].mean().loc[metric.index]
                mean = metric.mean(axis=1)
                if band == "minmax":
                    lo, hi = metric.min(axis=1), metric.max(axis=1)
                else:
                    sd = metric.std(axis=1, ddof=1).fillna(0.0)
                    lo, hi = mean - sd, mean + sd
                xx, yy, at_edge = xs(xv), mean.to_numpy(), _at_edge(xv, x0)
                _edge_connector(ax, xx, yy, at_edge, color, fstyle)
                (line,) = ax.plot(
                    xx[~at_edge],
                    yy[~at_edge],
                    color=color,
                    markevery=_markevery(int((~at_edge).sum())),
                    label=f"{name} (n={n_ok})",
                    zorder=3,
                    **fstyle,
                )
                handles.append(line)
                if n_ok > 1:
                    # No band over the stand-in gap next to round 0 on a log axis: its width means nothing.
                    keep = ~at_edge
                    ax.fill_between(
                        xx[keep],
                        lo.to_numpy()[keep],
                        hi.to_numpy()[keep],
                        color=color,
                        alpha=0.18,
                        lw=0,
                        zorder=2,
                    )
            else:
                # Keep the method in the legend: a method with no ok run is a result, not an absence.
                handles.append(
                    Line2D([], [], color=color, label=f"{name} (n=0 ok)", **fstyle),
                )
            for _, run in s_rows[s_rows["status"] != "ok"].groupby("run_dir", sort=True):
                st = str(run["status"].iloc[0])
                kind = "diverged" if st == "diverged" else "other"
                xx, yy = xs(run[x]), run["metric"].to_numpy(dtype=float)
                # Faint enough that the stand-in gap on a log axis does not read as a trend.
                ax.plot(xx, yy, color=color, linestyle=fstyle["linestyle"], lw=0.9, alpha=0.5, zorder=2)
                ax.plot(xx[-1:], yy[-1:], color=color, linestyle="none", zorder=4, **END_MARKERS[kind])
                ended.setdefault(st, []).append(
                    f"{name} seed {int(run['seed'].iloc[0])} (round {int(run['round'].iloc[-1])})"
                )
        for st in ended:
            kind = "diverged" if st == "diverged" else "other"
            handles.append(
                Line2D([], [], color="0.25", linestyle="none", label=f"{st} (last eval)", **END_MARKERS[kind])
            )
        ax.legend(handles=handles, loc="best")
        ax.set_xlabel(X_LABELS[x] + (" (log scale)" if log_x else ""))
        ax.set_ylabel(_metric_label(metric_names[0]))
        if log_x:
            ax.set_xscale("log")
            if x0 is not None:
                _label_left_edge_zero(ax, x0)
        ax.set_title(title or f"{metric_names[0]} vs {X_LABELS[x].split(',')[0]}")

        band_text = "min–max over seeds" if band == "minmax" else "±1 sd over seeds (ddof=1)"
        notes = [
            f"{_setting_text(rows)} · seeds {_seeds_text(rows['seed'])}.",
            f"Line: mean over runs that finished ok; band: {band_text}.",
        ]
        for st, runs in ended.items():
            notes.append(f"Not in the mean, {st}: " + "; ".join(runs) + ".")
        if status is not None:
            no_rows = status[~status["run_dir"].astype(str).isin(set(rows["run_dir"].astype(str)))]
            if len(no_rows):
                notes.append(
                    "Runs with no evaluation (not drawn): "
                    + "; ".join(f"{r.method} seed {r.seed} ({r.status})" for r in no_rows.itertuples())
                    + "."
                )
        if x0 is not None:
            notes.append(
                "Round 0 (pretrained model, 0 bits) is drawn at the left edge, tick '0', linked by a "
                "dotted line; that gap is not to scale and has no band."
            )
        fig.text(0.0, -0.01, _wrap(notes, fig), fontsize=7.5, va="top", ha="left")
        return save(fig, out_png)


def _at_edge(values: pd.Series, x0: float | None) -> np.ndarray:
    """Which points are round-0 stand-ins drawn at the left edge of a log axis."""
    v = values.to_numpy(dtype=float)
    return (v <= 0) if x0 is not None else np.zeros(len(v), dtype=bool)


def _edge_connector(
    ax: Any, xx: np.ndarray, yy: np.ndarray, at_edge: np.ndarray, color: str, fstyle: dict[str, Any]
) -> None:
    # Round 0 at the stand-in edge: its marker, and a faint dotted link to the first real point, so the
    # start is visible without the long segment reading as a trend.
    if not at_edge.any():
        return
    ax.plot(xx[at_edge], yy[at_edge], color=color, linestyle="none", marker=fstyle["marker"], zorder=3)
    if (~at_edge).any():
        i, j = np.flatnonzero(at_edge)[-1], np.flatnonzero(~at_edge)[0]
        ax.plot(xx[[i, j]], yy[[i, j]], color=color, linestyle=":", lw=1.0, alpha=0.6, zorder=2)


def _label_left_edge_zero(ax: Any, x0: float) -> None:
    # Put x0 into the tick set with the label "0" and keep the log decades, without a tick between
    # x0 and the next decade (that region only holds the stand-in for zero).
    hi = ax.get_xlim()[1]
    ax.set_xlim(x0 / 2, hi)
    decades = range(math.floor(math.log10(x0)) + 1, math.ceil(math.log10(hi)) + 1)
    ticks = [10.0**d for d in decades if 10.0**d <= hi]
    ax.set_xticks([x0, *ticks], ["0", *[f"$10^{{{d}}}$" for d in decades if 10.0**d <= hi]])
    ax.xaxis.set_minor_locator(mpl.ticker.LogLocator(subs="auto"))
    ax.xaxis.set_minor_formatter(mpl.ticker.NullFormatter())


def final_metric_bar(table: pd.DataFrame, out_png: str | Path, title: str | None = None) -> tuple[Path, Path]:
    """Bar per table row (``zofo.tables.final_metric_table``): final mean with ±sd error bars.

    Colour per method, ZO bars hatched; a black tick on each bar marks the pretrained (round 0) mean,
    and the text above gives ok seeds and diverged/failed counts. A row with no ok run gets no bar but
    keeps its place and text. Several settings in one table are allowed (the setting joins the tick
    label). Returns the PNG and PDF paths.
    """
    if table.empty:
        raise ValueError("empty table")
    metric_names = sorted(set(table["metric_name"].dropna().astype(str)))
    if len(metric_names) > 1:
        raise ValueError(f"table mixes metrics {metric_names}; plot one metric at a time")
    several_settings = len(table[list(SETTING_KEYS)].drop_duplicates()) > 1
    several_labels = table["label"].fillna("").astype(str).nunique() > 1
    with style():
        fig = Figure(figsize=(max(4.0, 0.9 * len(table) + 1.5), 4.0))
        ax = fig.add_subplot()
        ticks = []
        top = np.nanmax(np.r_[table["final_mean"] + table["final_sd"].fillna(0), table["start_mean"], 0.0])
        for i, r in enumerate(table.itertuples(index=False)):
            color = method_color(str(r.method))
            is_zo = str(r.family).lower() == "zo"
            if r.n_seeds > 0 and not pd.isna(r.final_mean):
                ax.bar(
                    i,
                    r.final_mean,
                    width=0.7,
                    color=color,
                    alpha=0.85,
                    hatch="//" if is_zo else None,
                    edgecolor="white" if is_zo else color,
                    yerr=None if pd.isna(r.final_sd) else r.final_sd,
                    capsize=4,
                    error_kw={"elinewidth": 1.2, "ecolor": "0.15"},
                )
            if not pd.isna(r.start_mean):
                ax.hlines(r.start_mean, i - 0.38, i + 0.38, color="black", lw=2, zorder=4)
            parts = [f"n={r.n_seeds}"]
            if r.n_diverged:
                parts.append(f"{r.n_diverged} div.")
            if r.n_failed:
                parts.append(f"{r.n_failed} failed")
            y = 0.0 if pd.isna(r.final_mean) else r.final_mean + (0 if pd.isna(r.final_sd) else r.final_sd)
            ax.text(i, y + 0.02 * (top or 1), "\n".join(parts), ha="center", va="bottom", fontsize=7.5)
            tick = str(r.method) + (f"\n[{r.label}]" if several_labels and r.label else "")
            if several_settings:
                tick += f"\n{r.model}/{r.task}{_fmt_alpha(r.alpha)}"
            ticks.append(tick)
        ax.set_xticks(range(len(table)), ticks, rotation=0 if len(table) <= 6 else 30)
        ax.set_ylim(0, (top or 1) * 1.2)
        ax.set_ylabel("final " + _metric_label(metric_names[0]) if metric_names else "final metric")
        ax.grid(axis="x", visible=False)
        ax.legend(
            handles=[Line2D([], [], color="black", lw=2, label="pretrained (round 0)")], loc="upper right"
        )
        ax.set_title(title or "final metric per method")
        note = "Bars: mean over ok seeds; error bars: ±1 sd (ddof=1; none with one seed)."
        if not several_settings:
            note = f"{_setting_text(table)}. " + note
        fig.text(0.0, -0.01, _wrap([note], fig), fontsize=7.5, va="top", ha="left")
        return save(fig, out_png)


# Aggregation rules in the robustness figure: the plain mean solid, every robust rule dashed.
AGGREGATOR_STYLE: dict[str, dict[str, Any]] = {
    "mean": {"linestyle": "-", "marker": "o"},
    "majority": {"linestyle": "-", "marker": "o"},
}
ROBUST_STYLE: dict[str, Any] = {"linestyle": "--", "marker": "s", "markerfacecolor": "white"}


def robustness(rows: pd.DataFrame, out_png: str | Path, title: str | None = None) -> tuple[Path, Path]:
    """Final metric against the Byzantine fraction: one panel per method, one line per aggregation rule
    (mean +- sd over seeds that finished ok), the attack in each panel's title, and the pretrained
    start as a dotted level. A run that diverged is drawn as x at the panel's floor (it has no final
    metric to speak of) and counted in the caption. ``rows`` is ``load_runs``'s rows frame of one
    setting (model, task, partition, alpha) and one metric."""
    for col in ("status", "run_dir", "byz_frac", "aggregator", "attack"):
        if col not in rows.columns:
            raise ValueError(f"rows need a {col!r} column (use zofo.results.load_runs)")
    if rows.empty:
        raise ValueError("no rows to plot")
    metric_names = sorted(set(rows["metric_name"].astype(str)))
    if len(metric_names) > 1:
        raise ValueError(f"rows mix metrics {metric_names}")
    last = rows.sort_values("round").groupby("run_dir", sort=False).tail(1)
    start = rows[rows["round"] == 0]["metric"]
    methods = [m for _, m, _ in _series_order(last.drop_duplicates("method"))]
    cols = min(4, len(methods))
    nrows = math.ceil(len(methods) / cols)
    diverged: list[str] = []
    with style():
        fig = Figure(figsize=(3.0 * cols, 2.6 * nrows + 0.4))
        axes = fig.subplots(nrows, cols, sharex=True, sharey=True, squeeze=False).ravel()
        floor = min(float(start.min()) if len(start) else 1.0, float(last["metric"].min())) - 0.05
        for ax, method in zip(axes, methods, strict=False):
            m_rows = last[last["method"] == method]
            color = method_color(method)
            for agg, g in sorted(m_rows.groupby("aggregator"), key=lambda kv: kv[0] != "mean"):
                ok = g[g["status"] == "ok"]
                stats = ok.groupby("byz_frac")["metric"].agg(["mean", "std", "count"]).sort_index()
                st = AGGREGATOR_STYLE.get(agg, ROBUST_STYLE)
                ax.errorbar(
                    stats.index,
                    stats["mean"],
                    yerr=stats["std"].fillna(0.0),
                    color=color,
                    capsize=2,
                    label=agg,
                    **st,
                )
                bad = g[g["status"] != "ok"]
                if len(bad):
                    ax.plot(
                        bad["byz_frac"],
                        [floor] * len(bad),
                        color=color,
                        linestyle="none",
                        **END_MARKERS["diverged"],
                    )
                    diverged += [
                        f"{method}/{agg} at {b:g} seed {int(s)}"
                        for b, s in zip(bad["byz_frac"], bad["seed"], strict=True)
                    ]
            s0 = rows[(rows["method"] == method) & (rows["round"] == 0)]["metric"]
            if len(s0):
                ax.axhline(float(s0.mean()), color="0.4", linestyle=":", lw=1.0)
            attacks = sorted(set(m_rows["attack"].astype(str)) - {"none"})
            ax.set_title(f"{method}" + (f" · {', '.join(attacks)}" if attacks else ""), fontsize=9.5)
            ax.legend(loc="lower left", fontsize=7.5)
        for ax in axes[len(methods) :]:
            ax.set_visible(False)
        for ax in axes[::cols]:
            ax.set_ylabel(_metric_label(metric_names[0]))
        for ax in axes[-cols:]:
            ax.set_xlabel("Byzantine fraction")
        fig.suptitle(title or f"final {metric_names[0]} under Byzantine clients", y=1.0)
        notes = [
            f"{_setting_text(rows)} · seeds {_seeds_text(rows['seed'])}.",
            "Points: mean over seeds that finished ok, bars ±1 sd; solid: the method's own rule (mean; "
            "FeedSign's vote), dashed: a robust rule; dotted level: the pretrained model (round 0).",
            "Panel title: the attack the Byzantine clients run (matched to what the method sends).",
        ]
        if diverged:
            notes.append("x at the floor: diverged (non-finite loss): " + "; ".join(diverged) + ".")
        fig.text(0.0, -0.01, _wrap(notes, fig), fontsize=7.5, va="top", ha="left")
        return save(fig, out_png)
