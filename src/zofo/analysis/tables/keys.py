"""What a table row, a figure series and a "setting" are keyed by, and the one row order of every table."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

# A table group: one experiment whose seeds are averaged. A study's grid columns
# (``zofo.analysis.load.grid_columns``) are further group keys after these.
GROUP_KEYS: tuple[str, ...] = (
    "method",
    "family",
    "model",
    "task",
    "partition",
    "alpha",
    "byz_frac",
    "attack",
    "aggregator",
    "label",
)
# Bits and targets are compared within one setting; a figure panel shows one.
SETTING_KEYS: tuple[str, ...] = ("model", "task", "partition", "alpha")
FAMILY_ORDER: dict[str, int] = {"fo": 0, "zo": 1}


def sort_rows(df: pd.DataFrame, grid: Sequence[str] = ()) -> pd.DataFrame:
    """Within each setting: FO methods first, then ZO, then anything else, each by name, then by the
    grid columns (so a sweep reads in order of its value)."""
    order = df["family"].map(lambda f: FAMILY_ORDER.get(str(f).lower(), len(FAMILY_ORDER)))
    df = df.assign(_family_order=order)
    keys = [*SETTING_KEYS, "label", "_family_order", "method", "byz_frac", "aggregator", *grid]
    return df.sort_values(keys, kind="stable", na_position="last").drop(columns="_family_order")


def describe(keys: tuple[Any, ...], names: Sequence[str] = GROUP_KEYS) -> str:
    """``method='fedavg', model='m', ...``: a group named in an error message."""
    return ", ".join(f"{k}={v!r}" for k, v in zip(names, keys, strict=True))


def iter_settings(frame: pd.DataFrame) -> Iterable[tuple[dict[str, Any], pd.DataFrame]]:
    """(setting, rows of that setting) for each (model, task, partition, alpha)."""
    for keys, g in frame.groupby(list(SETTING_KEYS), dropna=False, sort=True):
        yield dict(zip(SETTING_KEYS, keys, strict=True)), g
