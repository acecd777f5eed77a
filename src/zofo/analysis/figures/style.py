"""The figures' shared style and parts: colours, line styles, the alpha axis, points with error bars,
captions, and ``save`` (a PNG and the PDF of the same stem).

Every figure is built on a bare ``matplotlib.figure.Figure`` (never pyplot), so importing the figures
neither selects nor changes the process's backend and figures are never registered with a GUI; saving
renders with Agg (PNG) and the PDF backend.

A method keeps its colour in every figure (``METHOD_COLORS``; unknown names get a fallback colour from a
hash of the name, so also stable). The family sets the line: FO solid with circles, ZO dashed with
triangles.
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

from zofo.analysis.tables.keys import FAMILY_ORDER, SETTING_KEYS
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
    # No creation date: a figure redrawn from the same tables is the same file, byte for byte.
    fig.savefig(out_pdf, format="pdf", metadata={"CreationDate": None})
    return out_png, out_pdf


def fmt_alpha(alpha: Any) -> str:
    return "" if pd.isna(alpha) or math.isinf(float(alpha)) else f" (α={float(alpha):g})"


def setting_text(df: pd.DataFrame, model: bool = True) -> str:
    s = df.iloc[0]
    text = f"{s['task']} · partition {s['partition']}{fmt_alpha(s['alpha'])}"
    return f"{s['model']} · {text}" if model else text


def seeds_text(seeds: Sequence[Any]) -> str:
    seeds = sorted({int(s) for s in seeds})
    return ",".join(map(str, seeds)) if len(seeds) <= 10 else f"{seeds[0]}…{seeds[-1]} ({len(seeds)})"


def metric_label(metric_name: str) -> str:
    better = HIGHER_IS_BETTER.get(metric_name)
    arrow = "" if better is None else (" (↑ better)" if better else " (↓ better)")
    return f"{metric_name}{arrow}"


def series_order(df: pd.DataFrame) -> list[tuple[str, str, str]]:
    keys = df[["family", "method", "label"]].drop_duplicates().astype(str).itertuples(index=False)
    return sorted(keys, key=lambda k: (FAMILY_ORDER.get(k[0].lower(), len(FAMILY_ORDER)), k[1], k[2]))


def wrap(notes: Sequence[str], fig: Figure) -> str:
    # ~15 characters of 7.5 pt text per inch keeps the caption within the figure's width.
    width = max(60, int(fig.get_figwidth() * 15))
    return "\n".join(textwrap.fill(n, width) for n in notes)


def markevery(n: int) -> int:
    return max(1, math.ceil(n / MAX_MARKERS))


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


PRETRAINED_STYLE: dict[str, Any] = {"color": "0.5", "linestyle": "--", "lw": 1.1, "zorder": 1}
PRETRAINED_LABEL = "pretrained (round 0)"
IID_LABEL = "iid"
ERRORBAR_STYLE: dict[str, Any] = {"fmt": "none", "capsize": 3, "elinewidth": 1.1, "zorder": 2}
CAPTION_ERRORBARS = "error bars ±1 sd over seeds (ddof=1; none where a point has one seed)"


def check_frame(df: pd.DataFrame | None, required: Sequence[str], what: str, hint: str = "") -> None:
    """ValueError naming the figure and what is wrong, before any drawing starts."""
    if df is None or len(df) == 0:
        raise ValueError(f"{what}: nothing to plot (empty frame)")
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}{hint}")


def single_value(df: pd.DataFrame, col: str, what: str) -> Any:
    values = sorted({str(v) for v in df[col].dropna()})
    if len(values) > 1:
        raise ValueError(f"{what}: rows mix {col} values {values}; plot one at a time")
    return values[0] if values else None


def alpha_values(values: pd.Series, what: str) -> pd.Series:
    # NaN and inf both mean "no Dirichlet concentration" (see fmt_alpha), i.e. the iid end of the axis.
    alpha = values.astype(float).fillna(math.inf)
    if (alpha <= 0).any():
        raise ValueError(f"{what}: Dirichlet alpha must be > 0, got {sorted(set(alpha[alpha <= 0]))}")
    return alpha


@dataclass(frozen=True)
class AlphaAxis:
    """A log alpha axis whose alpha = inf (iid) sits one decade right of the largest finite alpha.

    The gap to iid is not to scale (there is no scale to infinity); the figures link the iid point by a
    dotted segment and say so in the caption.
    """

    finite: tuple[float, ...]
    iid_x: float | None

    @classmethod
    def of(cls, alphas: pd.Series) -> AlphaAxis:
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


def draw_points(
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


def draw_methods(ax: Any, stats: pd.DataFrame, several_labels: bool, iid_col: str | None = None) -> None:
    """One ``draw_points`` series per (method, label) of ``stats``, in the figures' family order;
    ``iid_col`` names the alpha column whose infinite values are drawn as the iid point."""
    for family, method, label in series_order(stats):
        pts = stats[(stats["method"] == method) & (stats["label"] == label)]
        draw_points(
            ax,
            pts,
            color=method_color(method),
            fstyle=family_style(family),
            label=series_name(method, label, several_labels),
            is_iid=None if iid_col is None else np.isinf(pts[iid_col].to_numpy(dtype=float)),
        )


def pretrained_line(ax: Any, level: float) -> None:
    if not math.isnan(level):
        ax.axhline(level, label=PRETRAINED_LABEL, **PRETRAINED_STYLE)


def series_name(method: str, label: str, several_labels: bool) -> str:
    return f"{method} [{label}]" if several_labels and label else method


def clients_text(df: pd.DataFrame) -> str:
    values = sorted({int(v) for v in df["num_clients"].dropna()})
    return "/".join(map(str, values)) + " clients" if values else "clients unknown"


def partition_text(runs: pd.DataFrame) -> str:
    finite = runs[np.isfinite(runs["alpha"])]
    parts = []
    if len(finite):
        alphas = ", ".join(f"{a:g}" for a in sorted(set(finite["alpha"])))
        parts.append(f"{'/'.join(sorted(set(finite['partition'].astype(str))))} α ∈ {{{alphas}}}")
    infinite = runs[~np.isfinite(runs["alpha"])]
    if len(infinite):
        parts.append(f"{'/'.join(sorted(set(infinite['partition'].astype(str))))} (α = ∞)")
    return "partition " + " and ".join(parts)


def study_setting_text(runs: pd.DataFrame, *, alpha_varies: bool) -> str:
    """Model(s), task, partition, clients and seeds of the runs behind a figure."""
    models = ", ".join(sorted(set(runs["model"].astype(str))))
    tasks = ", ".join(sorted(set(runs["task"].astype(str))))
    if alpha_varies:
        partition = partition_text(runs)
    else:
        partition = f"partition {runs['partition'].iloc[0]}{fmt_alpha(runs['alpha'].iloc[0])}"
    return f"{models} · {tasks} · {partition} · {clients_text(runs)} · seeds {seeds_text(runs['seed'])}."


def alpha_name(alpha: float) -> str:
    return IID_LABEL if math.isinf(alpha) else f"α={alpha:g}"


def excluded_text(bad: pd.DataFrame, where: Callable[[pd.Series], str]) -> list[str]:
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


def fewer_seeds_text(stats: pd.DataFrame, n_seeds: int, where: Callable[[pd.Series], str]) -> list[str]:
    short = stats[stats["n"] < n_seeds]
    if short.empty:
        return []
    return [
        "Fewer seeds at: " + "; ".join(f"{where(r)} (n={int(r['n'])})" for _, r in short.iterrows()) + "."
    ]


def fmt_value(value: Any) -> str:
    number = float_or_nan(value)
    return str(value) if math.isnan(number) else f"{number:g}"


def caption(fig: Figure, notes: Sequence[str]) -> None:
    # Below the lowest axes decoration (tick labels, x label) rather than at a fixed offset: short
    # figures (a cost table of two methods) and rotated method names reach below the figure's edge.
    to_fig = fig.transFigure.inverted()
    lowest = min(
        (float(to_fig.transform(ax.get_tightbbox())[0][1]) for ax in fig.axes if ax.get_visible()),
        default=0.0,
    )
    fig.text(0.0, min(lowest, 0.0) - 0.01, wrap(notes, fig), fontsize=7.5, va="top", ha="left")


def row_ticks(table: pd.DataFrame) -> list[str]:
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
                tick += fmt_alpha(r["alpha"])
        ticks.append(tick)
    return ticks


def table_setting_text(table: pd.DataFrame) -> str | None:
    """The setting of a summary table when it holds one, else None (the ticks then carry it)."""
    if not all(c in table.columns for c in SETTING_KEYS):
        return None
    if len(table[list(SETTING_KEYS)].astype(str).drop_duplicates()) > 1:
        return None
    return setting_text(table)


def float_or_nan(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
