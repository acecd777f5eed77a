"""Tables as text: mean ± sd and bit counts as strings, Markdown and LaTeX, written atomically."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from zofo.analysis.load import PARAMETERS
from zofo.engine.record import atomic_write_text


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


def format_final_table(table: pd.DataFrame, digits: int = 3, grid: Sequence[str] = ()) -> pd.DataFrame:
    """The ``final_metric_table`` as strings for a paper/markdown table (one column per quantity).

    The ``grid`` columns are shown after the partition (``parameters`` in millions); a ``reported``
    column (from ``attach_reported``) is shown last, as ``paper``.
    """
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
    for key in grid:
        if key == PARAMETERS:  # a count of weights reads better in millions
            out[key] = ["—" if pd.isna(v) else f"{float(v) / 1e6:.1f}M" for v in table[key]]
        else:
            out[key] = [_plain(v) for v in table[key]]
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
    if "reported" in table.columns:
        out["paper"] = table["reported"].fillna("")
    return out


def _plain(value: Any) -> str:
    # A swept integer read next to a missing value comes back as float (4096.0): print it as 4096.
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


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
            # What returning clients downloaded for rounds they missed, counted in the downlink above.
            "of which catch-up": [format_bits(b) for b in table["catch_up_per_client_round"]],
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
    table: pd.DataFrame,
    out_csv: str | Path,
    out_md: str | Path | None = None,
    digits: int = 3,
    grid: Sequence[str] = (),
) -> None:
    """Convenience for workflow scripts: raw numbers to CSV, the formatted table to markdown (both
    written atomically)."""
    atomic_write_text(out_csv, table.to_csv(index=False))
    if out_md is not None:
        atomic_write_text(out_md, to_markdown(format_final_table(table, digits, grid=grid)))


# Characters of the formatted tables that LaTeX's default (non-Unicode) engines cannot typeset, replaced
# after pandas has escaped the LaTeX specials (so the "$" and backslashes added here stay commands).
_LATEX_SYMBOLS: dict[str, str] = {
    "±": r"$\pm$",
    "→": r"$\rightarrow$",
    "α": r"$\alpha$",
    "—": "---",
}


def _latex_symbols(text: Any) -> str:
    out = str(text)
    for symbol, command in _LATEX_SYMBOLS.items():
        out = out.replace(symbol, command)
    return out


def write_latex(table: pd.DataFrame, path: str | Path, digits: int = 3, grid: Sequence[str] = ()) -> None:
    """The ``final_metric_table`` as a booktabs LaTeX tabular (needs ``\\usepackage{booktabs}``).

    The cells are ``format_final_table``'s strings, so markdown and LaTeX show the same digits;
    mean ± sd reads ``0.880 $\\pm$ 0.005``. Method names, labels and headers are escaped by pandas'
    own LaTeX writer (``fedavg_lora`` -> ``fedavg\\_lora``), then the few Unicode symbols the
    formatter uses become LaTeX commands. Written atomically: a reader never sees half a table.
    """
    formatted = format_final_table(table, digits, grid)
    styler = formatted.style.hide(axis="index")
    styler = styler.format(_latex_symbols, escape="latex")
    styler = styler.format_index(_latex_symbols, escape="latex", axis="columns")
    atomic_write_text(path, styler.to_latex(hrules=True))
