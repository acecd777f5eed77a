"""The study figures: final metric against the Byzantine fraction, the Dirichlet alpha or a swept
hyperparameter, and the one-shot gap against model size.

Each draws a study's tables: the points are rows of ``final_metric_table`` (or ``gap_table``), the
dotted or dashed level a row of ``pretrained_table``, and the runs a caption names (did not finish ok)
rows of ``run_table``. No figure computes a mean, a standard deviation or a gap itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from zofo.analysis.figures.style import (
    CAPTION_ERRORBARS,
    END_MARKERS,
    AlphaAxis,
    Drawn,
    alpha_name,
    alpha_values,
    caption,
    check_frame,
    draw_methods,
    draw_points,
    excluded_text,
    family_style,
    fewer_seeds_text,
    fmt_value,
    method_color,
    metric_label,
    pretrained_line,
    save,
    seeds_text,
    series_order,
    setting_text,
    single_value,
    study_setting_text,
    style,
    wrap,
)
from zofo.analysis.load import PARAMETERS
from zofo.analysis.tables.keys import SETTING_KEYS
from zofo.analysis.tables.summary import ONESHOT_PAIR

FINAL_REQUIRED: tuple[str, ...] = (
    "method",
    "family",
    "model",
    "task",
    "label",
    "alpha",
    "metric_name",
    "n_seeds",
    "final_mean",
    "final_sd",
)
RUN_REQUIRED: tuple[str, ...] = ("method", "model", "task", "alpha", "seed", "status", "run_dir")
HINT = " (use zofo.analysis.tables)"


def _points(final: pd.DataFrame, keys: Sequence[str], what: str) -> pd.DataFrame:
    """The groups with an ok seed as points (``keys``, mean, sd, n), one per key; ValueError when two
    groups share one point (a grid value the figure does not show) or none has an ok seed."""
    measured = final[final["n_seeds"].astype(int) > 0]
    if measured.empty:
        raise ValueError(f"{what}: no group has a run that finished ok")
    dup = measured[measured.astype({k: str for k in keys}).duplicated(list(keys), keep=False)]
    if len(dup):
        shared = sorted(set(map(tuple, dup[list(keys)].astype(str).to_numpy())))
        raise ValueError(
            f"{what}: several groups at one point {shared}; "
            "they differ in a column the figure does not show: plot them separately"
        )
    return measured.assign(
        label=measured["label"].fillna("").astype(str),
        mean=measured["final_mean"].astype(float),
        sd=measured["final_sd"].astype(float),
        n=measured["n_seeds"].astype(int),
    ).reset_index(drop=True)


def _runs(runs: pd.DataFrame, what: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ok runs, runs that did not finish ok) of a run table, alpha NaN read as iid."""
    check_frame(runs, RUN_REQUIRED, what, HINT)
    runs = runs.assign(alpha=alpha_values(runs["alpha"], what))
    ok = runs[runs["status"] == "ok"]
    if ok.empty:
        raise ValueError(f"{what}: no run finished ok (statuses {sorted(set(runs['status'].astype(str)))})")
    return ok.reset_index(drop=True), runs[runs["status"] != "ok"].reset_index(drop=True)


def _pretrained(pretrained: pd.DataFrame, model: str, task: str) -> float:
    """The pretrained level of a model and task from ``pretrained_table``'s frame, NaN if absent."""
    row = pretrained[(pretrained["model"].astype(str) == model) & (pretrained["task"].astype(str) == task)]
    return float(row["pretrained"].iloc[0]) if len(row) else math.nan


# --------------------------------------------------------------------------------------------------
# Byzantine robustness

# Aggregation rules in the robustness figure: the plain mean solid, every robust rule dashed.
AGGREGATOR_STYLE: dict[str, dict[str, Any]] = {
    "mean": {"linestyle": "-", "marker": "o"},
    "majority": {"linestyle": "-", "marker": "o"},
}
ROBUST_STYLE: dict[str, Any] = {"linestyle": "--", "marker": "s", "markerfacecolor": "white"}


def robustness(
    final: pd.DataFrame,
    pretrained: pd.DataFrame,
    runs: pd.DataFrame,
    out_png: str | Path,
    title: str | None = None,
) -> Drawn:
    """Final metric against the Byzantine fraction: one panel per method, one line per aggregation rule
    (the final table's mean ± sd over seeds that finished ok), the attack in each panel's title, and
    the pretrained level dotted. A run that did not finish ok is drawn as x at the panel's floor (it
    has no final metric to speak of) and named in the caption. The tables hold one setting (model,
    task, partition, alpha) and one metric. Returns ``Drawn`` (``data["points"]``).
    """
    what = "robustness"
    check_frame(final, [*FINAL_REQUIRED, "byz_frac", "aggregator", "attack"], what, HINT)
    check_frame(runs, [*RUN_REQUIRED, "byz_frac", "aggregator", "final_metric", "start_metric"], what, HINT)
    measured = runs[runs["final_round"].notna()] if "final_round" in runs.columns else runs
    metric_name = single_value(final, "metric_name", what)
    settings = measured[list(SETTING_KEYS)].astype(str).drop_duplicates()
    if len(settings) > 1:
        raise ValueError(f"{what}: the runs span {len(settings)} settings {settings.to_dict('records')}")
    points = _points(final, ("method", "label", "aggregator", "byz_frac"), what)
    methods = [m for _, m, _ in series_order(measured.drop_duplicates("method"))]
    model, task = str(measured["model"].iloc[0]), str(measured["task"].iloc[0])
    level = _pretrained(pretrained, model, task)
    cols = min(4, len(methods))
    nrows = math.ceil(len(methods) / cols)
    diverged: list[str] = []
    with style():
        fig = Figure(figsize=(3.0 * cols, 2.6 * nrows + 0.4))
        axes = fig.subplots(nrows, cols, sharex=True, sharey=True, squeeze=False).ravel()
        lowest = np.nanmin(
            np.r_[measured["start_metric"].astype(float), measured["final_metric"].astype(float)]
        )
        floor = float(lowest) - 0.05
        for ax, method in zip(axes, methods, strict=False):
            m_runs = measured[measured["method"] == method]
            color = method_color(method)
            for agg, g in sorted(m_runs.groupby("aggregator"), key=lambda kv: kv[0] != "mean"):
                pts = points[(points["method"] == method) & (points["aggregator"] == agg)]
                pts = pts.sort_values("byz_frac")
                ax.errorbar(
                    pts["byz_frac"].astype(float),
                    pts["mean"],
                    yerr=pts["sd"].fillna(0.0),
                    color=color,
                    capsize=2,
                    label=agg,
                    **AGGREGATOR_STYLE.get(agg, ROBUST_STYLE),
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
            if not math.isnan(level):
                ax.axhline(level, color="0.4", linestyle=":", lw=1.0)
            attacks = sorted(set(m_runs["attack"].astype(str)) - {"none"})
            ax.set_title(f"{method}" + (f" · {', '.join(attacks)}" if attacks else ""), fontsize=9.5)
            ax.legend(loc="lower left", fontsize=7.5)
        for ax in axes[len(methods) :]:
            ax.set_visible(False)
        for ax in axes[::cols]:
            ax.set_ylabel(metric_label(str(metric_name)))
        for ax in axes[-cols:]:
            ax.set_xlabel("Byzantine fraction")
        fig.suptitle(title or f"final {metric_name} under Byzantine clients", y=1.0)
        notes = [
            f"{setting_text(measured)} · seeds {seeds_text(measured['seed'])}.",
            "Points: mean over seeds that finished ok, bars ±1 sd; solid: the method's own rule (mean; "
            "FeedSign's vote), dashed: a robust rule; dotted level: the pretrained model (round 0).",
            "Panel title: the attack the Byzantine clients run (matched to what the method sends).",
        ]
        if diverged:
            notes.append("x at the floor: diverged (non-finite loss): " + "; ".join(diverged) + ".")
        fig.text(0.0, -0.01, wrap(notes, fig), fontsize=7.5, va="top", ha="left")
        return Drawn(save(fig, out_png), {"points": points, "pretrained": level}, fig)


# --------------------------------------------------------------------------------------------------
# heterogeneity


def heterogeneity(
    final: pd.DataFrame,
    pretrained: pd.DataFrame,
    runs: pd.DataFrame,
    out_png: str | Path,
    *,
    title: str | None = None,
) -> Drawn:
    """Final metric against the Dirichlet concentration alpha, per method, one panel per model.

    The tables hold one task over several alphas (alpha = inf: an iid partition). Points are the final
    table's mean over seeds with ±1 sd error bars (none with one seed) on a log alpha axis, iid one
    decade right of the largest finite alpha with the tick "iid". A grey dashed line marks each
    model's pretrained level. Returns ``Drawn`` (png, pdf; ``data["points"]``, ``data["pretrained"]``
    per model, ``data["iid_x"]``).
    """
    what = "heterogeneity"
    check_frame(final, FINAL_REQUIRED, what, HINT)
    ok, bad = _runs(runs, what)
    metric_name = single_value(final, "metric_name", what)
    task = single_value(ok, "task", what)
    points = _points(final, ("model", "method", "label", "alpha"), what)
    points = points.assign(alpha=alpha_values(points["alpha"], what))
    axis = AlphaAxis.of(points["alpha"])
    points["x"] = [axis.x(a) for a in points["alpha"]]
    models = sorted(set(points["model"].astype(str)))
    levels = {m: _pretrained(pretrained, m, str(task)) for m in models}
    several_labels = points["label"].nunique() > 1
    with style():
        fig = Figure(figsize=(max(6.4, 4.6 * len(models)), 4.4))
        axes = fig.subplots(1, len(models), sharey=True, squeeze=False).ravel()
        for ax, model in zip(axes, models, strict=True):
            draw_methods(ax, points[points["model"] == model], several_labels, iid_col="alpha")
            pretrained_line(ax, levels[model])
            axis.apply(ax)
            ax.set_xlabel("Dirichlet α (log scale; smaller = more heterogeneous)")
            if len(models) > 1:
                ax.set_title(model, fontsize=9.5)
            ax.legend(loc="best")
        axes[0].set_ylabel("final " + metric_label(str(metric_name)))
        fig.suptitle(title or f"final {metric_name} vs client heterogeneity", y=1.0)

        def where(r: pd.Series) -> str:
            return (
                f"{r['method']}"
                + (f" {r['model']}" if len(models) > 1 else "")
                + f" {alpha_name(r['alpha'])}"
            )

        notes = [
            study_setting_text(ok, alpha_varies=True),
            "Points: mean over seeds of the final metric (last evaluated round) of runs that finished ok; "
            f"{CAPTION_ERRORBARS}. Grey dashed: the pretrained model (mean round-0 metric).",
        ]
        if axis.iid_x is not None:
            notes.append(
                "iid (α = ∞) is drawn one decade right of the largest α, linked by a dotted line; that gap "
                "is not to scale."
            )
        notes += fewer_seeds_text(points, ok["seed"].nunique(), where)
        notes += excluded_text(bad, where)
        caption(fig, notes)
        paths = save(fig, out_png)
    data = {"points": points, "pretrained": levels, "iid_x": axis.iid_x, "metric_name": metric_name}
    return Drawn(paths, data, fig)


# --------------------------------------------------------------------------------------------------
# a swept hyperparameter


def swept_axis(final: pd.DataFrame, grid: Sequence[str]) -> str:
    """The grid column a sweep figure puts on its x axis: the one whose value varies across the final
    table (``parameters`` is a model size, never swept here), else the first; ValueError when several
    vary or there is none."""
    candidates = [c for c in grid if c != PARAMETERS and c in final.columns]
    varying = [c for c in candidates if final[c].nunique(dropna=False) > 1]
    if len(varying) > 1:
        raise ValueError(f"a sweep figure shows one swept value; {varying} all vary: give each its own study")
    if not (varying or candidates):
        raise ValueError(
            f"a sweep figure needs a grid column other than {PARAMETERS!r}; the grid has {list(grid)}"
        )
    return (varying or candidates)[0]


def sweep(
    final: pd.DataFrame,
    pretrained: pd.DataFrame,
    runs: pd.DataFrame,
    axis: str,
    out_png: str | Path,
    axis_label: str | None = None,
    *,
    title: str | None = None,
) -> Drawn:
    """Final metric against a swept hyperparameter (the grid column ``axis``), per method.

    The tables hold one setting (model, task, partition, alpha) and a numeric ``axis`` column. Points:
    the final table's mean over ok seeds ±1 sd (none with one seed); the x axis is logarithmic when
    every value is positive and they span more than 10x, linear otherwise. The grey dashed line is the
    pretrained level. Returns ``Drawn`` (png, pdf; ``data["points"]``, ``data["pretrained"]``,
    ``data["log_x"]``).
    """
    what = f"sweep over {axis!r}"
    check_frame(final, [*FINAL_REQUIRED, axis], what, HINT)
    ok, bad = _runs(runs, what)
    metric_name = single_value(final, "metric_name", what)
    settings = ok[list(SETTING_KEYS)].astype(str).drop_duplicates()
    if len(settings) > 1:
        raise ValueError(
            f"{what}: rows span {len(settings)} settings {settings.to_dict('records')}; plot one at a time "
            "(zofo.analysis.tables.iter_settings)"
        )
    points = _points(final, ("method", "label", axis), what)
    values = pd.to_numeric(points[axis], errors="coerce").astype(float)
    if not np.isfinite(values).all():
        raise ValueError(
            f"{what}: every group with an ok run needs a finite number in {axis!r}; groups without one: "
            f"{sorted(points.loc[~np.isfinite(values), 'method'].astype(str))}"
        )
    points = points.assign(value=values, x=values)
    uniq = np.unique(values.to_numpy())
    log_x = bool((uniq > 0).all() and uniq.max() / uniq.min() > 10)
    level = _pretrained(pretrained, str(ok["model"].iloc[0]), str(ok["task"].iloc[0]))
    several_labels = points["label"].nunique() > 1
    label = axis_label or axis
    with style():
        fig = Figure(figsize=(6.4, 4.4))
        ax = fig.add_subplot()
        draw_methods(ax, points, several_labels)
        pretrained_line(ax, level)
        if log_x:
            ax.set_xscale("log")
        if len(uniq) <= 10:
            # The swept values are the only meaningful x positions; label exactly those.
            ax.set_xticks(uniq, [f"{v:g}" for v in uniq])
            ax.xaxis.set_minor_locator(mpl.ticker.NullLocator())
        ax.set_xlabel(label + (" (log scale)" if log_x else ""))
        ax.set_ylabel("final " + metric_label(str(metric_name)))
        ax.legend(loc="best")
        ax.set_title(title or f"final {metric_name} vs {label}")

        def where(r: pd.Series) -> str:
            # Points carry the numeric "value"; excluded runs only the grid column.
            v = r["value"] if "value" in r.index else r.get(axis)
            return f"{r['method']} {axis}={fmt_value(v)}"

        notes = [
            study_setting_text(ok, alpha_varies=False),
            f"x: {label}. Points: mean over seeds of the final metric (last evaluated round) of runs that "
            f"finished ok; {CAPTION_ERRORBARS}. Grey dashed: the pretrained model (mean round-0 metric).",
        ]
        notes += fewer_seeds_text(points, ok["seed"].nunique(), where)
        notes += excluded_text(bad, where)
        caption(fig, notes)
        paths = save(fig, out_png)
    data = {"points": points, "pretrained": level, "log_x": log_x, "metric_name": metric_name}
    return Drawn(paths, data, fig)


# --------------------------------------------------------------------------------------------------
# one round against multi-round

GAP_ZERO_LABEL = "gap 0: one round matches multi-round"
# The error bars of the gap: as many standard errors as the claims require before a gap counts.
GAP_BAR_SE = 2.0
GAP_REQUIRED: tuple[str, ...] = (
    "model",
    "task",
    "alpha",
    PARAMETERS,
    "metric_name",
    "fedavg_n",
    "oneshot_n",
    "gap",
    "gap_se",
)


def oneshot_gap(
    gaps: pd.DataFrame, runs: pd.DataFrame | None, out_png: str | Path, *, title: str | None = None
) -> Drawn:
    """How much multi-round FedAvg gains over one round at equal local compute, against model size and
    alpha: the rows of ``gap_table`` (the difference of the two methods' group means, ``gap``, and its
    standard error, ``gap_se``; ``zofo.analysis.points.oneshot_gap`` says why group means).

    Left: the gap ±2 se against model size (``parameters``, log), one line per alpha, points named by
    model. Right: the gap against alpha (log; iid as in ``heterogeneity``), one line per model. A gap
    whose error bar crosses 0 is one the claims call within 2 standard errors. ``runs`` (``run_table``,
    optional) names the runs left out because they did not finish ok. Returns ``Drawn`` (png, pdf;
    ``data["points"]``, ``data["iid_x"]``).
    """
    what = "oneshot_gap"
    check_frame(gaps, GAP_REQUIRED, what, " (use zofo.analysis.tables.gap_table)")
    metric_name = single_value(gaps, "metric_name", what)
    single_value(gaps, "task", what)
    sizes = pd.to_numeric(gaps[PARAMETERS], errors="coerce").astype(float)
    per_model = sizes.groupby(gaps["model"]).agg(["min", "max"])
    if not (np.isfinite(sizes).all() and (sizes > 0).all()) or (per_model["min"] != per_model["max"]).any():
        raise ValueError(
            f"{what}: {PARAMETERS!r} must be one positive number per model, got {per_model.to_dict()}"
        )
    measured = gaps[gaps["gap"].notna()]
    if measured.empty:
        raise ValueError(f"{what}: no cell has an ok run of both fedavg and oneshot")
    dup = measured.duplicated(["model", "alpha"], keep=False)
    if dup.any():
        raise ValueError(f"{what}: several cells per model and alpha; plot one attack and label at a time")
    points = pd.DataFrame(
        {
            "model": measured["model"].astype(str),
            "alpha": alpha_values(measured["alpha"], what),
            PARAMETERS: sizes[measured.index],
            "mean": measured["gap"].astype(float),
            "sd": GAP_BAR_SE * measured["gap_se"].astype(float),
            "n": measured[["fedavg_n", "oneshot_n"]].astype(int).min(axis=1),
        }
    ).reset_index(drop=True)
    axis = AlphaAxis.of(points["alpha"])
    points["alpha_x"] = [axis.x(a) for a in points["alpha"]]
    alphas = sorted(set(points["alpha"]))
    models = list(points.sort_values([PARAMETERS, "model"]).drop_duplicates("model")["model"])
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
        points["left_x"] = points[PARAMETERS] * points["alpha"].map(alpha_dodge)
        points["right_x"] = points["alpha_x"] * points["model"].map(model_dodge)
        for a in alphas:
            pts = points[points["alpha"] == a].assign(x=lambda d: d["left_x"])
            draw_points(left, pts, color=alpha_colors[a], fstyle=fo, label=alpha_name(a))
        for model, g in points.groupby("model", sort=False):
            # Name each model once, above its highest error bar, rather than once per alpha at one x.
            top = float((g["mean"] + g["sd"].fillna(0.0)).max())
            left.annotate(
                str(model),
                (float(g[PARAMETERS].iloc[0]), top),
                xytext=(0, 4),
                textcoords="offset points",
                ha="center",
                fontsize=7.5,
            )
        left.set_xscale("log")
        left.set_xlabel(f"model size ({PARAMETERS}, log scale)")
        left.set_ylabel(f"gap in final {metric_label(str(metric_name))}: fedavg − oneshot")
        left.set_title("against model size", fontsize=9.5)
        for model in models:
            pts = points[points["model"] == model].assign(x=lambda d: d["right_x"])
            draw_points(
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
            _gap_setting_text(gaps, runs),
            "Gap = mean final metric (last evaluated round) of fedavg − that of oneshot, each over its seeds "
            "that finished ok, same model and α (multi-round vs one round at equal local compute); error "
            f"bars ±{GAP_BAR_SE:g} standard errors of that difference (the claims' rule: a gap whose bar "
            "crosses 0 is within it). Above 0: the rounds help.",
            "Model sizes: "
            + ", ".join(f"{m} {points.loc[points['model'] == m, PARAMETERS].iloc[0]:.3g}" for m in models)
            + f" ({PARAMETERS}).",
        ]
        notes.append("Points that share an x (α at one size, models at one α) are offset slightly sideways.")
        if axis.iid_x is not None:
            notes.append(
                "Right: iid (α = ∞) is one decade right of the largest α, dotted link; gap not to scale."
            )
        if runs is not None:
            pair = runs[runs["method"].isin(ONESHOT_PAIR)]
            bad = pair[pair["status"] != "ok"].assign(alpha=lambda d: alpha_values(d["alpha"], what))
            notes += excluded_text(bad, lambda r: f"{r['method']} {r['model']} {alpha_name(r['alpha'])}")
        caption(fig, notes)
        paths = save(fig, out_png)
    data = {"points": points, "iid_x": axis.iid_x, "metric_name": metric_name}
    return Drawn(paths, data, fig)


def _gap_setting_text(gaps: pd.DataFrame, runs: pd.DataFrame | None) -> str:
    """Model(s), task, partition, clients and seeds behind the gap figure (the runs where given)."""
    if runs is not None and len(runs):
        pair = runs[(runs["method"].isin(ONESHOT_PAIR)) & (runs["status"] == "ok")]
        if len(pair):
            return study_setting_text(
                pair.assign(alpha=alpha_values(pair["alpha"], "oneshot_gap")), alpha_varies=True
            )
    models = ", ".join(sorted(set(gaps["model"].astype(str))))
    return f"{models} · {', '.join(sorted(set(gaps['task'].astype(str))))}."
