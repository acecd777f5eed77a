"""Cost per method: client and server seconds per round and peak memory, drawn from ``cost_table``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from zofo.analysis.figures.style import (
    Drawn,
    bar_style,
    caption,
    check_frame,
    clients_text,
    row_ticks,
    save,
    style,
    table_setting_text,
)


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
    check_frame(table, required, what)
    table = table.reset_index(drop=True)
    ticks = row_ticks(table)
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
        setting = table_setting_text(table)
        if setting is not None:
            notes.insert(
                0, setting + (f" · {clients_text(table)}." if "num_clients" in table.columns else ".")
            )
        caption(fig, notes)
        paths = save(fig, out_png)
    return Drawn(paths, {"panels": panels, "ticks": ticks}, fig)
