"""Figures with one shared style: metric vs round / uplink bits, and final metric per method.

Every figure is built on a bare ``matplotlib.figure.Figure`` (never pyplot), so importing this module
neither selects nor changes the process's backend and figures are never registered with a GUI; saving
renders with Agg (PNG) and the PDF backend. Each figure is written twice: ``out_png`` and the PDF of the
same stem next to it.

A method keeps its colour in every figure (``METHOD_COLORS``; unknown names get a fallback colour
from a hash of the name, so also stable). The family sets the line: FO solid with circles, ZO dashed
with triangles. Runs that did not end ``ok`` never enter a mean line or band but are drawn and marked.

The study figures (``heterogeneity``, ``sweep``, ``oneshot_gap``, ``cost``, ``communication``) return
``Drawn``: the same (png, pdf) pair, plus the numbers they plotted and the Figure, so their content can
be checked without reading pixels.
"""

from __future__ import annotations

import contextlib
import math
import textwrap
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from zofo.analysis.tables import FAMILY_ORDER, SETTING_KEYS, format_bits
from zofo.engine.record import HIGHER_IS_BETTER

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


def bar_style(method: str, family: str | None) -> dict[str, Any]:
    """A method's bar in every bar chart: its colour, ZO hatched so the family reads without colour."""
    color = method_color(method)
    is_zo = str(family).lower() == "zo"
    return {
        "color": color,
        "alpha": 0.85,
        "hatch": "//" if is_zo else None,
        "edgecolor": "white" if is_zo else color,
    }


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


def _setting_text(df: pd.DataFrame, model: bool = True) -> str:
    s = df.iloc[0]
    text = f"{s['task']} · partition {s['partition']}{_fmt_alpha(s['alpha'])}"
    return f"{s['model']} · {text}" if model else text


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
    facet_order: Sequence[str] | None = None,
) -> Drawn:
    """Metric vs ``x``: mean over ok seeds per method, with a band across seeds; one panel per model.

    ``rows`` is ``load_runs``'s rows frame (it must carry ``status`` and ``run_dir``) with one metric,
    one task and one partition (alpha); the models may differ (a main study over model sizes), and each
    gets its own panel, in ``facet_order`` (model names) or by name. ValueError otherwise (see
    ``zofo.analysis.tables.iter_settings``). ``x`` is ``"round"``, ``"bits_up_cum"`` or ``"bits_down_cum"``;
    bits axes are logarithmic, and since round 0 has 0 bits it is drawn at a left edge one decade
    below the first non-zero value, with its tick labelled 0 (the caption says so). On bits axes the
    x of a round is the mean over seeds of the cumulative bits at that round (equal across seeds when
    payload sizes are fixed). ``band`` is ``"minmax"`` (range over seeds) or ``"sd"`` (mean ± sd).
    Runs not ``ok`` are drawn thin, outside the mean, with a marker at their last evaluation
    (× diverged, ◇ failed/other). ``status`` (optional) adds runs that have no rows at all to the
    caption's count. Returns the PNG and PDF paths (``Drawn``; ``data["panels"]``: the models, in
    panel order).
    """
    if x not in X_LABELS:
        raise ValueError(f"x must be one of {sorted(X_LABELS)}, not {x!r}")
    if band not in ("minmax", "sd"):
        raise ValueError(f"band must be 'minmax' or 'sd', not {band!r}")
    for col in ("status", "run_dir"):
        if col not in rows.columns:
            raise ValueError(f"rows need a {col!r} column (use zofo.analysis.load.load_runs)")
    if rows.empty:
        raise ValueError("no rows to plot")
    others = [k for k in SETTING_KEYS if k != "model"]
    settings = rows[others].drop_duplicates()
    if len(settings) > 1:
        raise ValueError(
            f"rows span {len(settings)} settings {settings.to_dict('records')}; plot one task and partition "
            "at a time (zofo.analysis.tables.iter_settings)"
        )
    metric_names = sorted(set(rows["metric_name"].astype(str)))
    if len(metric_names) > 1:
        raise ValueError(f"rows mix metrics {metric_names}")
    models = sorted(set(rows["model"].astype(str)))
    if facet_order is not None:
        missing = set(models) - set(facet_order)
        if missing:
            raise ValueError(f"facet_order {list(facet_order)} lacks the models {sorted(missing)}")
        models = [m for m in facet_order if m in models]

    log_x = x != "round"
    rows = rows.sort_values("round")
    positive = rows.loc[rows[x] > 0, x]
    x0 = 10.0 ** (math.floor(math.log10(positive.min())) - 1) if log_x and len(positive) else None
    several_labels = rows["label"].astype(str).nunique() > 1
    ended: dict[str, list[str]] = {}
    with style():
        fig = Figure(figsize=(6.4 if len(models) == 1 else 4.2 * len(models), 4.4))
        axes = fig.subplots(1, len(models), sharey=True, squeeze=False).ravel()
        handles: dict[str, Any] = {}
        for ax, model in zip(axes, models, strict=True):
            m_rows = rows[rows["model"].astype(str) == model]
            prefix = f"{model}: " if len(models) > 1 else ""
            for name, handle in _convergence_panel(ax, m_rows, x, x0, band, several_labels, ended, prefix):
                handles.setdefault(name, handle)
            ax.set_xlabel(X_LABELS[x] + (" (log scale)" if log_x else ""))
            if log_x:
                ax.set_xscale("log")
                if x0 is not None:
                    _label_left_edge_zero(ax, x0)
            if len(models) > 1:
                ax.set_title(model, fontsize=10)
        axes[0].set_ylabel(_metric_label(metric_names[0]))
        for st in ended:
            kind = "diverged" if st == "diverged" else "other"
            handles[st] = Line2D(
                [], [], color="0.25", linestyle="none", label=f"{st} (last eval)", **END_MARKERS[kind]
            )
        axes[-1].legend(handles=list(handles.values()), loc="best")
        heading = title or f"{metric_names[0]} vs {X_LABELS[x].split(',')[0]}"
        if len(models) == 1:
            axes[0].set_title(heading)
        else:
            fig.suptitle(heading, y=1.0)

        band_text = "min–max over seeds" if band == "minmax" else "±1 sd over seeds (ddof=1)"
        setting = _setting_text(rows, model=len(models) == 1)  # several models: the panels name them
        notes = [
            f"{setting} · seeds {_seeds_text(rows['seed'])}.",
            f"Line: mean over runs that finished ok (n = their number); band: {band_text}.",
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
        return Drawn(save(fig, out_png), {"panels": models}, fig)


def _convergence_panel(
    ax: Any,
    rows: pd.DataFrame,
    x: str,
    x0: float | None,
    band: str,
    several_labels: bool,
    ended: dict[str, list[str]],
    prefix: str,
) -> list[tuple[str, Any]]:
    """Draw one model's series on ``ax``; returns (series name, legend handle) per series, and adds
    the runs that did not finish ok to ``ended`` (status -> descriptions)."""

    def xs(values: pd.Series) -> np.ndarray:
        v = values.to_numpy(dtype=float)
        return np.where(v > 0, v, x0) if x0 is not None else v

    handles: list[tuple[str, Any]] = []
    for family, method, label in _series_order(rows):
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
            handles.append((name, line))
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
            handles.append((name, Line2D([], [], color=color, label=f"{name} (n=0 ok)", **fstyle)))
        for _, run in s_rows[s_rows["status"] != "ok"].groupby("run_dir", sort=True):
            st = str(run["status"].iloc[0])
            kind = "diverged" if st == "diverged" else "other"
            xx, yy = xs(run[x]), run["metric"].to_numpy(dtype=float)
            # Faint enough that the stand-in gap on a log axis does not read as a trend.
            ax.plot(xx, yy, color=color, linestyle=fstyle["linestyle"], lw=0.9, alpha=0.5, zorder=2)
            ax.plot(xx[-1:], yy[-1:], color=color, linestyle="none", zorder=4, **END_MARKERS[kind])
            ended.setdefault(st, []).append(
                f"{prefix}{name} seed {int(run['seed'].iloc[0])} (round {int(run['round'].iloc[-1])})"
            )
    return handles


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
    """Bar per table row (``zofo.analysis.tables.final_metric_table``): final mean with ±sd error bars.

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
            if r.n_seeds > 0 and not pd.isna(r.final_mean):
                ax.bar(
                    i,
                    r.final_mean,
                    width=0.7,
                    **bar_style(str(r.method), r.family),
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
            raise ValueError(f"rows need a {col!r} column (use zofo.analysis.load.load_runs)")
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


# --------------------------------------------------------------------------------------------------
# study figures: heterogeneity, hyperparameter sweeps, one round vs many, cost, communication


class Drawn(tuple[Path, Path]):
    """``(png, pdf)`` as ``save`` returns them, with what was drawn attached.

    It unpacks like the pair the other figure functions return, so callers that only want the files
    are unaffected; ``data`` holds the plotted numbers (the frame behind each line or bar, reference
    levels, axis positions) and ``figure`` the Figure itself, so a test or a report can check what a
    figure shows without reading pixels.
    """

    data: dict[str, Any]
    figure: Figure

    def __new__(cls, paths: tuple[Path, Path], data: dict[str, Any], figure: Figure) -> Drawn:
        obj = super().__new__(cls, paths)
        obj.data = data
        obj.figure = figure
        return obj

    @property
    def png(self) -> Path:
        return self[0]

    @property
    def pdf(self) -> Path:
        return self[1]


# The columns of load_runs's rows frame that the study figures read (``label`` may be absent).
STUDY_ROW_COLUMNS: tuple[str, ...] = (
    "method",
    "family",
    "model",
    "task",
    "partition",
    "alpha",
    "num_clients",
    "seed",
    "round",
    "metric_name",
    "metric",
    "status",
    "run_dir",
)
# The pretrained level: a reference, not a series, so grey and thinner than any method's line.
PRETRAINED_STYLE: dict[str, Any] = {"color": "0.5", "linestyle": "--", "lw": 1.1, "zorder": 1}
PRETRAINED_LABEL = "pretrained (round 0)"
IID_LABEL = "iid"
ERRORBAR_STYLE: dict[str, Any] = {"fmt": "none", "capsize": 3, "elinewidth": 1.1, "zorder": 2}
CAPTION_ERRORBARS = "error bars ±1 sd over seeds (ddof=1; none where a point has one seed)"


def _check_frame(df: pd.DataFrame | None, required: Sequence[str], what: str, hint: str = "") -> None:
    """ValueError naming the figure and what is wrong, before any drawing starts."""
    if df is None or len(df) == 0:
        raise ValueError(f"{what}: nothing to plot (empty frame)")
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}{hint}")


def _single(df: pd.DataFrame, col: str, what: str) -> Any:
    values = sorted({str(v) for v in df[col].dropna()})
    if len(values) > 1:
        raise ValueError(f"{what}: rows mix {col} values {values}; plot one at a time")
    return values[0] if values else None


def _alphas(values: pd.Series, what: str) -> pd.Series:
    # NaN and inf both mean "no Dirichlet concentration" (see _fmt_alpha), i.e. the iid end of the axis.
    alpha = values.astype(float).fillna(math.inf)
    if (alpha <= 0).any():
        raise ValueError(f"{what}: Dirichlet alpha must be > 0, got {sorted(set(alpha[alpha <= 0]))}")
    return alpha


def _final_runs(
    rows: pd.DataFrame, what: str, extra: Sequence[str] = ()
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """One row per run: keys, ``final`` (metric at the last evaluated round), ``start`` (round 0).

    Returns (runs that finished ok, runs that did not, the metric's name). Runs not ok never enter a
    mean, but the caller names them in the caption, as the tables count them. ``extra`` columns must
    be constant within a run (a swept value, a model size): a run cannot sit at two x positions.
    """
    _check_frame(rows, [*STUDY_ROW_COLUMNS, *extra], what, " (use zofo.analysis.load.load_runs)")
    metric_name = _single(rows, "metric_name", what)
    for col in extra:
        varying = rows.groupby("run_dir")[col].nunique(dropna=False)
        if (varying > 1).any():
            raise ValueError(f"{what}: {col!r} changes within run(s) {sorted(varying[varying > 1].index)}")
    rows = rows.assign(label=rows["label"].fillna("").astype(str) if "label" in rows.columns else "")
    ordered = rows.sort_values(["run_dir", "round"], kind="stable").groupby("run_dir", sort=False)
    first, last = ordered.head(1).set_index("run_dir"), ordered.tail(1).set_index("run_dir")
    keys = ["method", "family", "label", "model", "task", "partition", "alpha", "num_clients", "seed"]
    runs = last[[*keys, *extra, "status"]].copy()
    runs["final"] = last["metric"].astype(float)
    # A run without a round-0 row has no pretrained value rather than its first later evaluation.
    runs["start"] = first["metric"].astype(float).where(first["round"] == 0)
    runs["alpha"] = _alphas(runs["alpha"], what)
    runs = runs.reset_index()
    ok = runs[runs["status"] == "ok"]
    if ok.empty:
        raise ValueError(f"{what}: no run finished ok (statuses {sorted(set(runs['status'].astype(str)))})")
    return ok.reset_index(drop=True), runs[runs["status"] != "ok"].reset_index(drop=True), str(metric_name)


def _one_run_per_seed(runs: pd.DataFrame, keys: Sequence[str], what: str) -> None:
    # Two runs of one seed at one point would be averaged as two seeds (the tables refuse the same).
    dup = runs[runs.duplicated([*keys, "seed"], keep=False)]
    if len(dup):
        raise ValueError(
            f"{what}: several runs of one seed at one point would be counted as seeds: "
            f"{sorted(dup['run_dir'].astype(str))}; give them different labels or plot them separately"
        )


def _mean_sd(df: pd.DataFrame, keys: Sequence[str], value: str) -> pd.DataFrame:
    """n, mean and sd (ddof=1, NaN with one value) of ``value`` per ``keys``."""
    out = df.groupby(list(keys), dropna=False, sort=True)[value].agg(["count", "mean", "std"])
    return out.rename(columns={"count": "n", "std": "sd"}).reset_index()


@dataclass(frozen=True)
class _AlphaAxis:
    """A log alpha axis whose alpha = inf (iid) sits one decade right of the largest finite alpha.

    The gap to iid is not to scale (there is no scale to infinity); the figures link the iid point by a
    dotted segment and say so in the caption.
    """

    finite: tuple[float, ...]
    iid_x: float | None

    @classmethod
    def of(cls, alphas: pd.Series) -> _AlphaAxis:
        values = sorted({float(a) for a in alphas})
        finite = tuple(a for a in values if math.isfinite(a))
        has_iid = any(math.isinf(a) for a in values)
        iid_x = (10.0 * max(finite) if finite else 1.0) if has_iid else None
        return cls(finite, iid_x)

    def x(self, alpha: float) -> float:
        if math.isinf(alpha):
            assert self.iid_x is not None
            return self.iid_x
        return float(alpha)

    def ticks(self) -> tuple[list[float], list[str]]:
        xs = [*self.finite] + ([self.iid_x] if self.iid_x is not None else [])
        return xs, [f"{a:g}" for a in self.finite] + ([IID_LABEL] if self.iid_x is not None else [])

    def apply(self, ax: Any) -> None:
        ax.set_xscale("log")
        xs, labels = self.ticks()
        ax.set_xlim(min(xs) / 2, max(xs) * 2)
        # Only the alphas that were run are ticks: log minor ticks would suggest a continuous axis
        # across the gap to iid.
        ax.set_xticks(xs, labels)
        ax.xaxis.set_minor_locator(mpl.ticker.NullLocator())


def _draw_points(
    ax: Any,
    pts: pd.DataFrame,
    *,
    color: str,
    fstyle: dict[str, Any],
    label: str,
    is_iid: np.ndarray | None = None,
) -> Line2D:
    """Mean line with ±sd error bars (only where n > 1) from ``pts`` (columns x, mean, sd, n).

    Points marked ``is_iid`` get their marker and a dotted link from the last finite point, not a
    solid segment: their distance on the axis is a placement, not a value.
    """
    order = np.argsort(pts["x"].to_numpy(dtype=float), kind="stable")
    x = pts["x"].to_numpy(dtype=float)[order]
    mean = pts["mean"].to_numpy(dtype=float)[order]
    sd = pts["sd"].to_numpy(dtype=float)[order]
    n = pts["n"].to_numpy(dtype=int)[order]
    iid = np.zeros(len(x), dtype=bool) if is_iid is None else np.asarray(is_iid, dtype=bool)[order]
    (line,) = ax.plot(x[~iid], mean[~iid], color=color, label=label, zorder=3, **fstyle)
    if iid.any():
        ax.plot(x[iid], mean[iid], color=color, linestyle="none", marker=fstyle.get("marker", "o"), zorder=3)
        if (~iid).any():
            i, j = np.flatnonzero(~iid)[-1], np.flatnonzero(iid)[0]
            ax.plot(x[[i, j]], mean[[i, j]], color=color, linestyle=":", lw=1.0, alpha=0.7, zorder=2)
    bars = (n > 1) & np.isfinite(sd)
    if bars.any():
        ax.errorbar(x[bars], mean[bars], yerr=sd[bars], ecolor=color, **ERRORBAR_STYLE)
    return line


def _draw_methods(ax: Any, stats: pd.DataFrame, several_labels: bool, iid_col: str | None = None) -> None:
    """One ``_draw_points`` series per (method, label) of ``stats``, in the figures' family order;
    ``iid_col`` names the alpha column whose infinite values are drawn as the iid point."""
    for family, method, label in _series_order(stats):
        pts = stats[(stats["method"] == method) & (stats["label"] == label)]
        _draw_points(
            ax,
            pts,
            color=method_color(method),
            fstyle=family_style(family),
            label=_series_name(method, label, several_labels),
            is_iid=None if iid_col is None else np.isinf(pts[iid_col].to_numpy(dtype=float)),
        )


def _pretrained_line(ax: Any, level: float) -> None:
    if not math.isnan(level):
        ax.axhline(level, label=PRETRAINED_LABEL, **PRETRAINED_STYLE)


def _series_name(method: str, label: str, several_labels: bool) -> str:
    return f"{method} [{label}]" if several_labels and label else method


def _clients_text(df: pd.DataFrame) -> str:
    values = sorted({int(v) for v in df["num_clients"].dropna()})
    return "/".join(map(str, values)) + " clients" if values else "clients unknown"


def _partition_text(runs: pd.DataFrame) -> str:
    finite = runs[np.isfinite(runs["alpha"])]
    parts = []
    if len(finite):
        alphas = ", ".join(f"{a:g}" for a in sorted(set(finite["alpha"])))
        parts.append(f"{'/'.join(sorted(set(finite['partition'].astype(str))))} α ∈ {{{alphas}}}")
    infinite = runs[~np.isfinite(runs["alpha"])]
    if len(infinite):
        parts.append(f"{'/'.join(sorted(set(infinite['partition'].astype(str))))} (α = ∞)")
    return "partition " + " and ".join(parts)


def _study_setting_text(runs: pd.DataFrame, *, alpha_varies: bool) -> str:
    """Model(s), task, partition, clients and seeds of the runs behind a figure."""
    models = ", ".join(sorted(set(runs["model"].astype(str))))
    tasks = ", ".join(sorted(set(runs["task"].astype(str))))
    if alpha_varies:
        partition = _partition_text(runs)
    else:
        partition = f"partition {runs['partition'].iloc[0]}{_fmt_alpha(runs['alpha'].iloc[0])}"
    return f"{models} · {tasks} · {partition} · {_clients_text(runs)} · seeds {_seeds_text(runs['seed'])}."


def _alpha_name(alpha: float) -> str:
    return IID_LABEL if math.isinf(alpha) else f"α={alpha:g}"


def _excluded_text(bad: pd.DataFrame, where: Callable[[pd.Series], str]) -> list[str]:
    """Caption lines naming the runs left out of every mean because they did not finish ok."""
    if bad.empty:
        return []
    items = [f"{where(r)} seed {int(r['seed'])} ({r['status']})" for _, r in bad.iterrows()]
    if len(items) > 12:
        counts = bad["status"].astype(str).value_counts().sort_index()
        return [
            "Not in any mean (did not finish ok): " + ", ".join(f"{n} {s}" for s, n in counts.items()) + "."
        ]
    return ["Not in any mean (did not finish ok): " + "; ".join(items) + "."]


def _fewer_seeds_text(stats: pd.DataFrame, n_seeds: int, where: Callable[[pd.Series], str]) -> list[str]:
    short = stats[stats["n"] < n_seeds]
    if short.empty:
        return []
    return [
        "Fewer seeds at: " + "; ".join(f"{where(r)} (n={int(r['n'])})" for _, r in short.iterrows()) + "."
    ]


def _fmt_value(value: Any) -> str:
    number = _float_or_nan(value)
    return str(value) if math.isnan(number) else f"{number:g}"


def _caption(fig: Figure, notes: Sequence[str]) -> None:
    # Below the lowest axes decoration (tick labels, x label) rather than at a fixed offset: short
    # figures (a cost table of two methods) and rotated method names reach below the figure's edge.
    to_fig = fig.transFigure.inverted()
    lowest = min(
        (float(to_fig.transform(ax.get_tightbbox())[0][1]) for ax in fig.axes if ax.get_visible()),
        default=0.0,
    )
    fig.text(0.0, min(lowest, 0.0) - 0.01, _wrap(notes, fig), fontsize=7.5, va="top", ha="left")


def heterogeneity(rows: pd.DataFrame, out_png: str | Path, *, title: str | None = None) -> Drawn:
    """Final metric against the Dirichlet concentration alpha, per method, one panel per model.

    ``rows`` is ``load_runs``'s rows frame for one task over several alphas (alpha = inf: an iid
    partition). Per ok run the final metric is the metric at its last evaluated round; points are the
    mean over seeds with ±1 sd error bars (none with one seed) on a log alpha axis, iid one decade
    right of the largest finite alpha with the tick "iid". A grey dashed line marks the mean round-0
    metric (the pretrained model) per model. Returns ``Drawn`` (png, pdf; ``data["points"]``,
    ``data["pretrained"]`` per model, ``data["iid_x"]``).
    """
    what = "heterogeneity"
    runs, bad, metric_name = _final_runs(rows, what)
    _single(runs, "task", what)
    _one_run_per_seed(runs, ("model", "method", "label", "alpha"), what)
    stats = _mean_sd(runs, ("model", "family", "method", "label", "alpha"), "final")
    axis = _AlphaAxis.of(stats["alpha"])
    stats["x"] = [axis.x(a) for a in stats["alpha"]]
    models = sorted(set(runs["model"].astype(str)))
    pretrained = {m: float(runs.loc[runs["model"] == m, "start"].mean()) for m in models}
    several_labels = runs["label"].nunique() > 1
    with style():
        fig = Figure(figsize=(max(6.4, 4.6 * len(models)), 4.4))
        axes = fig.subplots(1, len(models), sharey=True, squeeze=False).ravel()
        for ax, model in zip(axes, models, strict=True):
            _draw_methods(ax, stats[stats["model"] == model], several_labels, iid_col="alpha")
            _pretrained_line(ax, pretrained[model])
            axis.apply(ax)
            ax.set_xlabel("Dirichlet α (log scale; smaller = more heterogeneous)")
            if len(models) > 1:
                ax.set_title(model, fontsize=9.5)
            ax.legend(loc="best")
        axes[0].set_ylabel("final " + _metric_label(metric_name))
        fig.suptitle(title or f"final {metric_name} vs client heterogeneity", y=1.0)

        def where(r: pd.Series) -> str:
            return (
                f"{r['method']}"
                + (f" {r['model']}" if len(models) > 1 else "")
                + f" {_alpha_name(r['alpha'])}"
            )

        notes = [
            _study_setting_text(runs, alpha_varies=True),
            "Points: mean over seeds of the final metric (last evaluated round) of runs that finished ok; "
            f"{CAPTION_ERRORBARS}. Grey dashed: the pretrained model (mean round-0 metric).",
        ]
        if axis.iid_x is not None:
            notes.append(
                "iid (α = ∞) is drawn one decade right of the largest α, linked by a dotted line; that gap "
                "is not to scale."
            )
        notes += _fewer_seeds_text(stats, runs["seed"].nunique(), where)
        notes += _excluded_text(bad, where)
        _caption(fig, notes)
        paths = save(fig, out_png)
    data = {"points": stats, "pretrained": pretrained, "iid_x": axis.iid_x, "metric_name": metric_name}
    return Drawn(paths, data, fig)


def sweep(
    rows: pd.DataFrame,
    axis: str,
    out_png: str | Path,
    axis_label: str | None = None,
    *,
    title: str | None = None,
) -> Drawn:
    """Final metric against a swept hyperparameter (column ``axis``, attached by the caller), per method.

    ``rows`` is ``load_runs``'s rows frame of one setting (model, task, partition, alpha) with a numeric
    ``axis`` column, constant within each run. Points: mean over ok seeds ±1 sd (none with one seed);
    the x axis is logarithmic when every value is positive and they span more than 10x, linear
    otherwise. The grey dashed line is the mean round-0 metric. Returns ``Drawn`` (png, pdf;
    ``data["points"]``, ``data["pretrained"]``, ``data["log_x"]``).
    """
    what = f"sweep over {axis!r}"
    runs, bad, metric_name = _final_runs(rows, what, extra=(axis,))
    settings = runs[list(SETTING_KEYS)].astype(str).drop_duplicates()
    if len(settings) > 1:
        raise ValueError(
            f"{what}: rows span {len(settings)} settings {settings.to_dict('records')}; plot one at a time "
            "(zofo.analysis.tables.iter_settings)"
        )
    values = pd.to_numeric(runs[axis], errors="coerce").astype(float)
    if not np.isfinite(values).all():
        raise ValueError(
            f"{what}: every ok run needs a finite number in {axis!r}; runs without one: "
            f"{sorted(runs.loc[~np.isfinite(values), 'run_dir'].astype(str))}"
        )
    runs = runs.assign(value=values)
    _one_run_per_seed(runs, ("method", "label", "value"), what)
    stats = _mean_sd(runs, ("family", "method", "label", "value"), "final")
    stats["x"] = stats["value"]
    uniq = np.unique(values.to_numpy())
    log_x = bool((uniq > 0).all() and uniq.max() / uniq.min() > 10)
    pretrained = float(runs["start"].mean())
    several_labels = runs["label"].nunique() > 1
    label = axis_label or axis
    with style():
        fig = Figure(figsize=(6.4, 4.4))
        ax = fig.add_subplot()
        _draw_methods(ax, stats, several_labels)
        _pretrained_line(ax, pretrained)
        if log_x:
            ax.set_xscale("log")
        if len(uniq) <= 10:
            # The swept values are the only meaningful x positions; label exactly those.
            ax.set_xticks(uniq, [f"{v:g}" for v in uniq])
            ax.xaxis.set_minor_locator(mpl.ticker.NullLocator())
        ax.set_xlabel(label + (" (log scale)" if log_x else ""))
        ax.set_ylabel("final " + _metric_label(metric_name))
        ax.legend(loc="best")
        ax.set_title(title or f"final {metric_name} vs {label}")

        def where(r: pd.Series) -> str:
            # Summary points carry the numeric "value"; excluded runs only the caller's column.
            v = r["value"] if "value" in r.index else r[axis]
            return f"{r['method']} {axis}={_fmt_value(v)}"

        notes = [
            _study_setting_text(runs, alpha_varies=False),
            f"x: {label}. Points: mean over seeds of the final metric (last evaluated round) of runs that "
            f"finished ok; {CAPTION_ERRORBARS}. Grey dashed: the pretrained model (mean round-0 metric).",
        ]
        notes += _fewer_seeds_text(stats, runs["seed"].nunique(), where)
        notes += _excluded_text(bad, where)
        _caption(fig, notes)
        paths = save(fig, out_png)
    data = {"points": stats, "pretrained": pretrained, "log_x": log_x, "metric_name": metric_name}
    return Drawn(paths, data, fig)


ONESHOT_PAIR: tuple[str, str] = ("fedavg", "oneshot")
GAP_ZERO_LABEL = "gap 0: one round matches multi-round"


def oneshot_gap(rows: pd.DataFrame, size_col: str, out_png: str | Path, *, title: str | None = None) -> Drawn:
    """How much multi-round FedAvg gains over one round at equal local compute, against model size and alpha.

    ``rows`` is ``load_runs``'s rows frame with runs of ``fedavg`` and ``oneshot`` (other methods are
    ignored) over models (``model``; their size in ``size_col``, positive and one per model) and
    alphas. Gap per (model, alpha, seed) = final metric of fedavg - final metric of oneshot of the
    same seed; seeds with only one of the two are dropped and named in the caption. Left: mean gap ±1
    sd against model size (log), one line per alpha, points named by model. Right: mean gap against
    alpha (log; iid as in ``heterogeneity``), one line per model. Returns ``Drawn`` (png, pdf;
    ``data["pairs"]``, ``data["points"]``, ``data["unpaired"]``, ``data["iid_x"]``).
    """
    what = "oneshot_gap"
    _check_frame(rows, ["method"], what)
    present = set(rows["method"].astype(str))
    missing = [m for m in ONESHOT_PAIR if m not in present]
    if missing:
        raise ValueError(f"{what}: rows have no {' or '.join(missing)} runs (methods: {sorted(present)})")
    runs, bad, metric_name = _final_runs(rows[rows["method"].isin(ONESHOT_PAIR)], what, extra=(size_col,))
    _single(runs, "task", what)
    missing_ok = [m for m in ONESHOT_PAIR if m not in set(runs["method"])]
    if missing_ok:
        raise ValueError(f"{what}: no {' or '.join(missing_ok)} run finished ok")
    sizes = pd.to_numeric(runs[size_col], errors="coerce").astype(float)
    per_model = sizes.groupby(runs["model"]).agg(["min", "max"])
    if not (np.isfinite(sizes).all() and (sizes > 0).all()) or (per_model["min"] != per_model["max"]).any():
        raise ValueError(
            f"{what}: {size_col!r} must be one positive number per model, got {per_model.to_dict()}"
        )
    runs = runs.assign(size=sizes)
    _one_run_per_seed(runs, ("method", "model", "alpha"), what)

    key = ["model", "alpha", "seed"]
    fed = runs[runs["method"] == "fedavg"].set_index(key)["final"].rename("fedavg")
    one = runs[runs["method"] == "oneshot"].set_index(key)["final"].rename("oneshot")
    pairs = pd.concat([fed, one], axis=1, join="inner").reset_index()
    unpaired = runs[~runs.set_index(key).index.isin(pairs.set_index(key).index)][["method", *key]]
    if pairs.empty:
        raise ValueError(f"{what}: no (model, alpha, seed) has an ok run of both fedavg and oneshot")
    pairs["gap"] = pairs["fedavg"] - pairs["oneshot"]
    pairs["size"] = pairs["model"].map(runs.groupby("model")["size"].first())
    stats = _mean_sd(pairs, ("model", "alpha", "size"), "gap")
    axis = _AlphaAxis.of(stats["alpha"])
    stats["alpha_x"] = [axis.x(a) for a in stats["alpha"]]
    alphas = sorted(set(stats["alpha"]))
    models = list(stats.sort_values(["size", "model"]).drop_duplicates("model")["model"])
    # Alphas as an ordered scale (sequential colours, iid black); models as categories.
    alpha_colors = {
        a: ("black" if math.isinf(a) else mpl.colormaps["viridis"](i / max(1, len(alphas) - 1) * 0.85))
        for i, a in enumerate(alphas)
    }
    model_colors = {m: mpl.colormaps["tab10"](i % 10) for i, m in enumerate(models)}
    fo = family_style("fo")
    with style():
        fig = Figure(figsize=(11.0, 4.4))
        left, right = fig.subplots(1, 2, sharey=True)
        # Lines that share x positions (alphas at one model size, models at one alpha) are offset a few
        # per cent sideways on their log axes, far less than the gap between positions, so that their
        # error bars stay apart.
        alpha_dodge = {a: 10.0 ** (0.02 * (k - (len(alphas) - 1) / 2)) for k, a in enumerate(alphas)}
        model_dodge = {m: 10.0 ** (0.02 * (k - (len(models) - 1) / 2)) for k, m in enumerate(models)}
        stats["left_x"] = stats["size"] * stats["alpha"].map(alpha_dodge)
        stats["right_x"] = stats["alpha_x"] * stats["model"].map(model_dodge)
        for a in alphas:
            pts = stats[stats["alpha"] == a].assign(x=lambda d: d["left_x"])
            _draw_points(left, pts, color=alpha_colors[a], fstyle=fo, label=_alpha_name(a))
        for model, g in stats.groupby("model", sort=False):
            # Name each model once, above its highest error bar, rather than once per alpha at one x.
            top = float((g["mean"] + g["sd"].fillna(0.0)).max())
            left.annotate(
                str(model),
                (float(g["size"].iloc[0]), top),
                xytext=(0, 4),
                textcoords="offset points",
                ha="center",
                fontsize=7.5,
            )
        left.set_xscale("log")
        left.set_xlabel(f"model size ({size_col}, log scale)")
        left.set_ylabel(f"gap in final {_metric_label(metric_name)}: fedavg − oneshot")
        left.set_title("against model size", fontsize=9.5)
        for model in models:
            pts = stats[stats["model"] == model].assign(x=lambda d: d["right_x"])
            _draw_points(
                right,
                pts,
                color=model_colors[model],
                fstyle=fo,
                label=str(model),
                is_iid=np.isinf(pts["alpha"].to_numpy(dtype=float)),
            )
        axis.apply(right)
        right.set_xlabel("Dirichlet α (log scale; smaller = more heterogeneous)")
        right.set_title("against heterogeneity", fontsize=9.5)
        for ax in (left, right):
            ax.axhline(0.0, color="0.2", lw=1.0, zorder=1, label=GAP_ZERO_LABEL)
            ax.legend(loc="best")
        fig.suptitle(title or f"multi-round FedAvg vs one round: gap in final {metric_name}", y=1.0)

        notes = [
            _study_setting_text(runs, alpha_varies=True),
            "Gap = final metric (last evaluated round) of fedavg − that of oneshot with the same seed, "
            "model and α (multi-round vs one round at equal local compute); points: mean gap over paired "
            f"seeds, {CAPTION_ERRORBARS}. Above 0: the rounds help.",
            "Model sizes: "
            + ", ".join(f"{m} {stats.loc[stats['model'] == m, 'size'].iloc[0]:.3g}" for m in models)
            + f" ({size_col}).",
        ]
        notes.append("Points that share an x (α at one size, models at one α) are offset slightly sideways.")
        if axis.iid_x is not None:
            notes.append(
                "Right: iid (α = ∞) is one decade right of the largest α, dotted link; gap not to scale."
            )
        if len(unpaired):
            notes.append(
                "Dropped, no partner with the same seed: "
                + "; ".join(
                    f"{r.method} {r.model} {_alpha_name(r.alpha)} seed {int(r.seed)}"
                    for r in unpaired.itertuples()
                )
                + "."
            )
        notes += _excluded_text(bad, lambda r: f"{r['method']} {r['model']} {_alpha_name(r['alpha'])}")
        _caption(fig, notes)
        paths = save(fig, out_png)
    data = {
        "pairs": pairs,
        "points": stats,
        "unpaired": unpaired.reset_index(drop=True),
        "iid_x": axis.iid_x,
        "metric_name": metric_name,
    }
    return Drawn(paths, data, fig)


def _row_ticks(table: pd.DataFrame) -> list[str]:
    """Method per table row, with its label and setting where the table holds several of them."""
    several_labels = "label" in table.columns and table["label"].fillna("").astype(str).nunique() > 1
    setting_cols = [c for c in SETTING_KEYS if c in table.columns]
    several_settings = bool(setting_cols) and len(table[setting_cols].astype(str).drop_duplicates()) > 1
    ticks = []
    for r in table.to_dict("records"):
        tick = str(r["method"])
        if several_labels and r.get("label"):
            tick += f" [{r['label']}]"
        if several_settings:
            tick += " · " + "/".join(str(r[c]) for c in ("model", "task") if c in r)
            if "alpha" in r:
                tick += _fmt_alpha(r["alpha"])
        ticks.append(tick)
    return ticks


def _table_setting_text(table: pd.DataFrame) -> str | None:
    """The setting of a summary table when it holds one, else None (the ticks then carry it)."""
    if not all(c in table.columns for c in SETTING_KEYS):
        return None
    if len(table[list(SETTING_KEYS)].astype(str).drop_duplicates()) > 1:
        return None
    return _setting_text(table)


def _is_false(value: Any) -> bool:
    # matches_formula is True/False/None in the frame, "True"/"False"/"" once it went through a CSV.
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return False
    if isinstance(value, str):
        return value.strip().lower() == "false"
    return not bool(value)


def _log_span(values: np.ndarray, factor: float) -> bool:
    positive = values[np.isfinite(values) & (values > 0)]
    return bool(len(positive) and positive.max() / positive.min() > factor)


COST_PANELS: tuple[tuple[str, str, str, bool], ...] = (
    # (column stem, axis label, unit, may be logarithmic)
    ("client_seconds_per_round", "client seconds per round", "s", True),
    ("server_seconds_per_round", "server seconds per round", "s", True),
    ("peak_rss_mb", "peak memory (MB)", "MB", False),
)


def cost(table: pd.DataFrame, out_png: str | Path, *, title: str | None = None) -> Drawn:
    """Compute and memory per method: client and server seconds per round and peak RSS, ±1 sd.

    ``table`` has one row per method (drawn in the table's order, top to bottom) with columns
    ``method``, ``family``, ``n_seeds`` and ``<stem>_mean`` / ``<stem>_sd`` for each stem of
    ``COST_PANELS``; model/task/partition/alpha/label, where present, go into the caption or the
    ticks. ZO bars are hatched as in ``final_metric_bar``; a seconds panel is logarithmic when its
    values span more than 100x. Returns ``Drawn`` (png, pdf; ``data["panels"]`` per stem: log,
    values, sd).
    """
    what = "cost"
    required = ["method", "family", "n_seeds"] + [f"{s}_{k}" for s, *_ in COST_PANELS for k in ("mean", "sd")]
    _check_frame(table, required, what)
    table = table.reset_index(drop=True)
    ticks = _row_ticks(table)
    y = np.arange(len(table))
    panels: dict[str, dict[str, Any]] = {}
    with style():
        fig = Figure(figsize=(11.0, 0.42 * len(table) + 1.8))
        axes = fig.subplots(1, len(COST_PANELS), sharey=True)
        for ax, (stem, xlabel, unit, may_log) in zip(axes, COST_PANELS, strict=True):
            mean = table[f"{stem}_mean"].to_numpy(dtype=float)
            sd = table[f"{stem}_sd"].to_numpy(dtype=float)
            log_x = may_log and _log_span(mean, 100.0)
            if log_x:
                ax.set_xscale("log")
            for i, r in enumerate(table.itertuples(index=False)):
                if np.isfinite(mean[i]) and not (log_x and mean[i] <= 0):
                    ax.barh(i, mean[i], height=0.7, **bar_style(str(r.method), r.family))
                if np.isfinite(mean[i]) and np.isfinite(sd[i]) and int(r.n_seeds) > 1:
                    ax.errorbar(mean[i], i, xerr=sd[i], fmt="none", ecolor="0.15", capsize=3, elinewidth=1.1)
                text = "n/a" if not np.isfinite(mean[i]) else f"{mean[i]:.3g} {unit}"
                x_text = mean[i] + (sd[i] if np.isfinite(sd[i]) else 0.0) if np.isfinite(mean[i]) else 0.0
                if log_x and not x_text > 0:
                    # No bar for n/a or 0 on a log axis: the text stands at the panel's left edge.
                    x_text = float(np.nanmin(mean[mean > 0])) / 3.0
                ax.annotate(
                    text, (x_text, i), xytext=(3, 0), textcoords="offset points", va="center", fontsize=7
                )
            reach = float(np.nanmax(np.r_[mean + np.nan_to_num(sd), 0.0]))
            if log_x:
                # Start well left of the smallest bar so it stays visible; room on the right for its label.
                ax.set_xlim(float(np.nanmin(mean[mean > 0])) / 3.0, reach * 6.0)
            else:
                ax.set_xlim(0, reach * 1.3 or 1.0)
            ax.set_xlabel(xlabel + (" (log scale)" if log_x else ""))
            ax.grid(axis="y", visible=False)
            panels[stem] = {"log": log_x, "values": mean.tolist(), "sd": sd.tolist()}
        axes[0].set_yticks(y, ticks)
        axes[0].invert_yaxis()  # the table's first row on top
        fig.suptitle(title or "cost per method", y=1.0)
        seeds = ", ".join(f"{t} {int(n)}" for t, n in zip(ticks, table["n_seeds"], strict=True))
        notes = [
            "Bars: mean over seeds; error bars ±1 sd (ddof=1; none with one seed). Seeds per method: "
            f"{seeds}. A seconds panel is logarithmic when its values span more than 100×.",
            "Timings come from runs that may have shared the machine (2 runs in parallel on 2 cores), so "
            "ratios between methods are indicative, not exact; peak memory is each run's own process peak "
            "resident set.",
        ]
        setting = _table_setting_text(table)
        if setting is not None:
            notes.insert(
                0, setting + (f" · {_clients_text(table)}." if "num_clients" in table.columns else ".")
            )
        _caption(fig, notes)
        paths = save(fig, out_png)
    return Drawn(paths, {"panels": panels, "ticks": ticks}, fig)


COMM_REQUIRED: tuple[str, ...] = (
    "method",
    "family",
    "bits_up_per_client_round",
    "bits_down_per_client_round",
    "formula_up",
    "formula_down",
    "matches_formula",
)
TARGET_REQUIRED: tuple[str, ...] = (
    "method",
    "family",
    "n_runs",
    "n_reached",
    "bits_up_to_target_mean",
    "bits_up_to_target_sd",
    "target",
)
FORMULA_TICK: dict[str, Any] = {"color": "black", "lw": 2.2, "zorder": 4}
NOT_REACHED_MARKER: dict[str, Any] = {"marker": "x", "markersize": 8, "markeredgewidth": 2.0, "color": "0.35"}


def _float_or_nan(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _log_limits(values: np.ndarray) -> tuple[float, float]:
    positive = values[np.isfinite(values) & (values > 0)]
    if not len(positive):
        return 0.1, 10.0
    # A decade of room below for the "0"/"not reached" marks, above for the value labels.
    return float(positive.min()) / 10.0, float(positive.max()) * 30.0


def communication(
    comm: pd.DataFrame,
    out_png: str | Path,
    to_target: pd.DataFrame | None = None,
    *,
    title: str | None = None,
) -> Drawn:
    """Bits per client and round per method, against the methods' formulas; optionally bits to a target.

    ``comm`` is ``zofo.analysis.tables.communication_table``'s frame. Left: uplink (solid) and downlink
    (hatched) bars on a log axis, a black tick at each formula value, a note where counted bits differ
    from the formula. ``to_target`` (columns ``TARGET_REQUIRED``) adds a right panel: total uplink
    bits, all clients, until the target metric (mean ±1 sd over runs that reached it), with methods
    that never reached it marked "not reached". Returns ``Drawn`` (png, pdf; ``data["bits"]``,
    ``data["mismatch"]``, ``data["to_target"]``).
    """
    what = "communication"
    _check_frame(comm, COMM_REQUIRED, what, " (use zofo.analysis.tables.communication_table)")
    if to_target is not None:
        _check_frame(to_target, TARGET_REQUIRED, f"{what} (to_target)")
    comm = comm.reset_index(drop=True)
    ticks = _row_ticks(comm)
    bits = pd.DataFrame(
        {
            "tick": ticks,
            "method": comm["method"].astype(str),
            "up": comm["bits_up_per_client_round"].map(_float_or_nan),
            "down": comm["bits_down_per_client_round"].map(_float_or_nan),
            "formula_up": comm["formula_up"].map(_float_or_nan),
            "formula_down": comm["formula_down"].map(_float_or_nan),
            "mismatch": comm["matches_formula"].map(_is_false),
        }
    )
    mismatch = [t for t, bad in zip(ticks, bits["mismatch"], strict=True) if bad]
    width = 0.38
    target_data: pd.DataFrame | None = None
    with style():
        n_panels = 1 if to_target is None else 2
        fig = Figure(figsize=(max(5.5, 1.0 * len(comm) + 2.0) + (0 if to_target is None else 5.0), 4.6))
        axes = fig.subplots(1, n_panels, squeeze=False).ravel()
        ax = axes[0]
        ax.set_yscale("log")
        lo, hi = _log_limits(np.r_[bits["up"], bits["down"], bits["formula_up"], bits["formula_down"]])
        for i, r in bits.iterrows():
            color = method_color(r["method"])
            for dx, value, formula, hatched in (
                (-width / 2, r["up"], r["formula_up"], False),
                (width / 2, r["down"], r["formula_down"], True),
            ):
                x = int(i) + dx
                if np.isfinite(value) and value > 0:
                    ax.bar(
                        x,
                        value,
                        width=width,
                        color="white" if hatched else color,
                        edgecolor=color,
                        hatch="xxx" if hatched else None,
                        alpha=0.9,
                    )
                    ax.text(
                        x,
                        value * 1.3,
                        format_bits(value),
                        ha="center",
                        va="bottom",
                        rotation=90,
                        fontsize=6.5,
                    )
                else:
                    # Zero (or no) bits have no bar on a log axis; say it where the bar would stand.
                    ax.text(x, lo * 1.5, "0" if value == 0 else "n/a", ha="center", va="bottom", fontsize=7)
                if np.isfinite(formula) and formula > 0:
                    ax.hlines(formula, x - width / 2, x + width / 2, **FORMULA_TICK)
            if r["mismatch"]:
                top = np.nanmax([r["up"], r["down"], r["formula_up"], r["formula_down"]])
                ax.text(int(i), top * 8, "≠ formula", ha="center", va="bottom", color="#B00020", fontsize=7.5)
        ax.set_ylim(lo, hi)
        ax.set_xticks(
            range(len(bits)),
            ticks,
            rotation=0 if len(bits) <= 5 else 30,
            ha="center" if len(bits) <= 5 else "right",
        )
        ax.grid(axis="x", visible=False)
        ax.set_ylabel("bits per client and round (log scale)")
        ax.set_title("per client and round", fontsize=9.5)
        ax.legend(
            handles=[
                Patch(facecolor="0.45", edgecolor="0.45", label="uplink"),
                Patch(facecolor="white", edgecolor="0.45", hatch="xxx", label="downlink"),
                Line2D([], [], label="formula (each method's definition)", **FORMULA_TICK),
            ],
            loc="upper right",
        )
        notes = []
        setting = _table_setting_text(comm)
        if setting is not None:
            cohort = (
                f" · {', '.join(sorted(set(comm['cohort_size'].astype(str))))} clients per round"
                if "cohort_size" in comm.columns
                else ""
            )
            notes.append(setting + cohort + ".")
        runs = (
            f" over {'/'.join(sorted(set(comm['n_runs'].astype(str))))} runs"
            if "n_runs" in comm.columns
            else ""
        )
        notes.append(
            f"Left: bits counted on the wire per client and round (mean{runs}, every status); uplink solid, "
            "downlink hatched (one broadcast as one client receives it); black tick: the method's formula, "
            "from parameter counts and sizes, never from payloads. Log scale: 0 bits is written, not drawn."
        )
        if mismatch:
            notes.append("Counted bits differ from the formula for: " + ", ".join(mismatch) + ".")
        if to_target is not None:
            target_data = _draw_to_target(axes[1], to_target.reset_index(drop=True))
            targets = sorted({f"{_float_or_nan(t):g}" for t in to_target["target"]})
            notes.append(
                f"Right: total uplink bits, all clients, until a run first reached the target metric value "
                f"{' / '.join(targets)}; mean over the runs that reached it, ±1 sd (ddof=1; none with one "
                "run); k/n above a bar: runs that reached it / runs. × not reached: no run of the method "
                "reached it."
            )
        fig.suptitle(title or "communication per method", y=1.0)
        _caption(fig, notes)
        paths = save(fig, out_png)
    return Drawn(paths, {"bits": bits, "mismatch": mismatch, "to_target": target_data}, fig)


def _draw_to_target(ax: Any, tt: pd.DataFrame) -> pd.DataFrame:
    """The to-target panel; returns what it drew per row (mean, sd, reached)."""
    ticks = _row_ticks(tt)
    mean = tt["bits_up_to_target_mean"].map(_float_or_nan).to_numpy(dtype=float)
    sd = tt["bits_up_to_target_sd"].map(_float_or_nan).to_numpy(dtype=float)
    n_reached = tt["n_reached"].fillna(0).astype(int).to_numpy()
    reached = (n_reached > 0) & np.isfinite(mean) & (mean > 0)
    ax.set_yscale("log")
    lo, hi = _log_limits(np.where(reached, mean + np.nan_to_num(sd), np.nan))
    for i, r in enumerate(tt.itertuples(index=False)):
        if reached[i]:
            ax.bar(i, mean[i], width=0.6, **bar_style(str(r.method), r.family))
            if n_reached[i] > 1 and np.isfinite(sd[i]):
                ax.errorbar(i, mean[i], yerr=sd[i], fmt="none", ecolor="0.15", capsize=4, elinewidth=1.2)
            top = mean[i] + (sd[i] if np.isfinite(sd[i]) else 0.0)
            ax.text(i, top * 1.3, f"{n_reached[i]}/{int(r.n_runs)}", ha="center", va="bottom", fontsize=7.5)
        else:
            ax.plot([i], [lo * 2.0], linestyle="none", **NOT_REACHED_MARKER)
            ax.text(
                i,
                lo * 3.5,
                # the caption says what × means; a short label keeps nine methods from overlapping
                f"{n_reached[i]}/{int(r.n_runs)}",
                ha="center",
                va="bottom",
                fontsize=7.5,
            )
    ax.set_ylim(lo, hi)
    ax.set_xticks(
        range(len(tt)), ticks, rotation=0 if len(tt) <= 5 else 30, ha="center" if len(tt) <= 5 else "right"
    )
    ax.grid(axis="x", visible=False)
    ax.set_ylabel("uplink bits to target, all clients (log scale)")
    ax.set_title("to reach the target", fontsize=9.5)
    return pd.DataFrame({"tick": ticks, "mean": mean, "sd": sd, "n_reached": n_reached, "reached": reached})
