"""Communication per method, drawn from ``communication_table`` (bits per client and round against the
formulas) and ``bits_to_target`` (uplink bits until the target metric)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from zofo.analysis.figures.style import (
    Drawn,
    bar_style,
    caption,
    check_frame,
    float_or_nan,
    method_color,
    row_ticks,
    save,
    style,
    table_setting_text,
)
from zofo.analysis.tables.format import format_bits

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


def _is_false(value: Any) -> bool:
    # matches_formula is True/False/None in the frame, "True"/"False"/"" once it went through a CSV.
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return False
    if isinstance(value, str):
        return value.strip().lower() == "false"
    return not bool(value)


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
    check_frame(comm, COMM_REQUIRED, what, " (use zofo.analysis.tables.communication_table)")
    if to_target is not None:
        check_frame(to_target, TARGET_REQUIRED, f"{what} (to_target)")
    comm = comm.reset_index(drop=True)
    ticks = row_ticks(comm)
    bits = pd.DataFrame(
        {
            "tick": ticks,
            "method": comm["method"].astype(str),
            "up": comm["bits_up_per_client_round"].map(float_or_nan),
            "down": comm["bits_down_per_client_round"].map(float_or_nan),
            "formula_up": comm["formula_up"].map(float_or_nan),
            "formula_down": comm["formula_down"].map(float_or_nan),
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
        setting = table_setting_text(comm)
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
            targets = sorted({f"{float_or_nan(t):g}" for t in to_target["target"]})
            notes.append(
                f"Right: total uplink bits, all clients, until a run first reached the target metric value "
                f"{' / '.join(targets)}; mean over the runs that reached it, ±1 sd (ddof=1; none with one "
                "run); k/n above a bar: runs that reached it / runs. × not reached: no run of the method "
                "reached it."
            )
        fig.suptitle(title or "communication per method", y=1.0)
        caption(fig, notes)
        paths = save(fig, out_png)
    return Drawn(paths, {"bits": bits, "mismatch": mismatch, "to_target": target_data}, fig)


def _draw_to_target(ax: Any, tt: pd.DataFrame) -> pd.DataFrame:
    """The to-target panel; returns what it drew per row (mean, sd, reached)."""
    ticks = row_ticks(tt)
    mean = tt["bits_up_to_target_mean"].map(float_or_nan).to_numpy(dtype=float)
    sd = tt["bits_up_to_target_sd"].map(float_or_nan).to_numpy(dtype=float)
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
