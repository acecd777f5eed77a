"""Convergence: the metric against round or cumulative bits, one panel per model size; and a bar per
final-table row. Drawn from the tables (``curve_summary_table``, ``curve_table``, ``run_table``,
``final_metric_table``): the figures compute no statistic themselves."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from zofo.analysis.figures.style import (
    END_MARKERS,
    X_LABELS,
    Drawn,
    bar_style,
    family_style,
    fmt_alpha,
    markevery,
    method_color,
    metric_label,
    save,
    seeds_text,
    series_order,
    setting_text,
    style,
    wrap,
)
from zofo.analysis.load import PARAMETERS
from zofo.analysis.tables.keys import SETTING_KEYS
from zofo.analysis.tables.summary import CURVE_SUMMARY_COLUMNS


def panel_order(summary: pd.DataFrame) -> list[str]:
    """The models of a table, smallest first by ``parameters`` (by name where sizes are unknown or tie)."""
    models = summary[["model", PARAMETERS]] if PARAMETERS in summary.columns else summary[["model"]]
    models = models.assign(model=models["model"].astype(str)).drop_duplicates("model")
    if PARAMETERS not in models.columns:
        return sorted(models["model"])
    ordered = models.sort_values([PARAMETERS, "model"], na_position="last", kind="stable")
    return list(ordered["model"])


def convergence(
    summary: pd.DataFrame,
    curves: pd.DataFrame,
    x: str,
    out_png: str | Path,
    title: str | None = None,
    *,
    band: str = "minmax",
    runs: pd.DataFrame | None = None,
    facet_order: Sequence[str] | None = None,
) -> Drawn:
    """Metric vs ``x``: each group's mean curve over its ok seeds with a band across them; one panel per
    model.

    ``summary`` is ``curve_summary_table``'s frame (the mean, sd, min and max per round), ``curves``
    ``curve_table``'s (every run, every status: the runs that did not finish ok are drawn from it),
    with one metric, one task and one partition (alpha); the models may differ (a study over model
    sizes), and each gets its own panel, in ``facet_order`` (model names) or by ``parameters``. A
    panel holds one group per method and label: two (a grid value the figure does not separate) raise
    ValueError rather than share a line. ``x`` is ``"round"``, ``"bits_up_cum"`` or
    ``"bits_down_cum"``; bits axes are logarithmic, and since round 0 has 0 bits it is drawn at a left
    edge one decade below the first non-zero value, with its tick labelled 0 (the caption says so). On
    bits axes the x of a round is the mean over seeds of the cumulative bits at that round (equal
    across seeds when payload sizes are fixed). ``band`` is ``"minmax"`` (range over seeds) or
    ``"sd"`` (mean ± sd). Runs not ``ok`` are drawn thin, outside the mean, with a marker at their
    last evaluation (× diverged, ◇ failed/other). ``runs`` (``run_table``'s frame, optional) adds runs
    that have no evaluation at all to the caption. Returns ``Drawn`` (``data["panels"]``: the models,
    in panel order).
    """
    if x not in X_LABELS:
        raise ValueError(f"x must be one of {sorted(X_LABELS)}, not {x!r}")
    if band not in ("minmax", "sd"):
        raise ValueError(f"band must be 'minmax' or 'sd', not {band!r}")
    for col in ("status", "run_dir", "round", "metric", x):
        if col not in curves.columns:
            raise ValueError(f"curves need a {col!r} column (use zofo.analysis.tables.curve_table)")
    if curves.empty:
        raise ValueError("no rows to plot")
    others = [k for k in SETTING_KEYS if k != "model"]
    settings = curves[others].drop_duplicates()
    if len(settings) > 1:
        raise ValueError(
            f"rows span {len(settings)} settings {settings.to_dict('records')}; plot one task and partition "
            "at a time (zofo.analysis.tables.iter_settings)"
        )
    metric_names = sorted(set(curves["metric_name"].astype(str)))
    if len(metric_names) > 1:
        raise ValueError(f"rows mix metrics {metric_names}")
    models = sorted(set(curves["model"].astype(str)))
    order = list(facet_order) if facet_order is not None else panel_order(pd.concat([summary, curves]))
    missing = set(models) - set(order)
    if missing:
        raise ValueError(f"facet_order {order} lacks the models {sorted(missing)}")
    models = [m for m in order if m in models]

    log_x = x != "round"
    curves = curves.sort_values("round", kind="stable")
    positive = curves.loc[curves[x] > 0, x]
    x0 = 10.0 ** (math.floor(math.log10(positive.min())) - 1) if log_x and len(positive) else None
    several_labels = curves["label"].astype(str).nunique() > 1
    ended: dict[str, list[str]] = {}
    with style():
        fig = Figure(figsize=(6.4 if len(models) == 1 else 4.2 * len(models), 4.4))
        axes = fig.subplots(1, len(models), sharey=True, squeeze=False).ravel()
        handles: dict[str, Any] = {}
        for ax, model in zip(axes, models, strict=True):
            in_panel = curves["model"].astype(str) == model
            m_summary = summary[summary["model"].astype(str) == model]
            prefix = f"{model}: " if len(models) > 1 else ""
            drawn = _convergence_panel(
                ax, m_summary, curves[in_panel], x, x0, band, several_labels, ended, prefix
            )
            for name, handle in drawn:
                handles.setdefault(name, handle)
            ax.set_xlabel(X_LABELS[x] + (" (log scale)" if log_x else ""))
            if log_x:
                ax.set_xscale("log")
                if x0 is not None:
                    _label_left_edge_zero(ax, x0)
            if len(models) > 1:
                ax.set_title(model, fontsize=10)
        axes[0].set_ylabel(metric_label(metric_names[0]))
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
        setting = setting_text(curves, model=len(models) == 1)  # several models: the panels name them
        notes = [
            f"{setting} · seeds {seeds_text(curves['seed'])}.",
            f"Line: mean over runs that finished ok (n = their number); band: {band_text}.",
        ]
        for st, ended_runs in ended.items():
            notes.append(f"Not in the mean, {st}: " + "; ".join(ended_runs) + ".")
        if runs is not None:
            no_rows = runs[~runs["run_dir"].astype(str).isin(set(curves["run_dir"].astype(str)))]
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
        fig.text(0.0, -0.01, wrap(notes, fig), fontsize=7.5, va="top", ha="left")
        return Drawn(save(fig, out_png), {"panels": models}, fig)


def _convergence_panel(
    ax: Any,
    summary: pd.DataFrame,
    curves: pd.DataFrame,
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

    x_mean = "round" if x == "round" else f"{x}_mean"
    handles: list[tuple[str, Any]] = []
    for family, method, label in series_order(curves):
        in_series = (summary["method"].astype(str) == method) & (summary["label"].astype(str) == label)
        s_summary = summary[in_series]
        s_curves = curves[(curves["method"].astype(str) == method) & (curves["label"].astype(str) == label)]
        color, fstyle = method_color(method), family_style(family)
        name = f"{method} [{label}]" if several_labels and label else method
        n_ok = _runs_of_series(s_summary, name)
        if n_ok:
            pts = s_summary.sort_values("round")
            xv = pts[x_mean]
            mean = pts["metric_mean"]
            if band == "minmax":
                lo, hi = pts["metric_min"], pts["metric_max"]
            else:
                sd = pts["metric_sd"].fillna(0.0)
                lo, hi = mean - sd, mean + sd
            xx, yy, at_edge = xs(xv), mean.to_numpy(dtype=float), _at_edge(xv, x0)
            _edge_connector(ax, xx, yy, at_edge, color, fstyle)
            (line,) = ax.plot(
                xx[~at_edge],
                yy[~at_edge],
                color=color,
                markevery=markevery(int((~at_edge).sum())),
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
                    lo.to_numpy(dtype=float)[keep],
                    hi.to_numpy(dtype=float)[keep],
                    color=color,
                    alpha=0.18,
                    lw=0,
                    zorder=2,
                )
        else:
            # Keep the method in the legend: a method with no ok run is a result, not an absence.
            handles.append((name, Line2D([], [], color=color, label=f"{name} (n=0 ok)", **fstyle)))
        for _, run in s_curves[s_curves["status"] != "ok"].groupby("run_dir", sort=True):
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


def _runs_of_series(s_summary: pd.DataFrame, name: str) -> int:
    """The ok runs of a series' one group; ValueError when the series holds several groups."""
    if s_summary.empty:
        return 0
    # A group is everything of a summary row but its round's numbers.
    groups = s_summary.drop(columns=[c for c in CURVE_SUMMARY_COLUMNS if c in s_summary.columns])
    groups = groups.astype(str).drop_duplicates()
    if len(groups) > 1:
        varying = [c for c in groups.columns if groups[c].nunique(dropna=False) > 1]
        raise ValueError(
            f"series {name!r} holds {len(groups)} groups that differ in {varying}; a convergence panel "
            "draws one line per method and label"
        )
    return int(s_summary["n_runs"].iloc[0])


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
                tick += f"\n{r.model}/{r.task}{fmt_alpha(r.alpha)}"
            ticks.append(tick)
        ax.set_xticks(range(len(table)), ticks, rotation=0 if len(table) <= 6 else 30)
        ax.set_ylim(0, (top or 1) * 1.2)
        ax.set_ylabel("final " + metric_label(metric_names[0]) if metric_names else "final metric")
        ax.grid(axis="x", visible=False)
        ax.legend(
            handles=[Line2D([], [], color="black", lw=2, label="pretrained (round 0)")], loc="upper right"
        )
        ax.set_title(title or "final metric per method")
        note = "Bars: mean over ok seeds; error bars: ±1 sd (ddof=1; none with one seed)."
        if not several_settings:
            note = f"{setting_text(table)}. " + note
        fig.text(0.0, -0.01, wrap([note], fig), fontsize=7.5, va="top", ha="left")
        return save(fig, out_png)
