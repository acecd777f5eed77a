"""Run folders read back: ``load_runs`` turns folders in the results schema (``zofo.engine.record``)
into one typed frame of rows and one frame of the runs' status."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from zofo.engine.record import COLUMN_DEFAULTS, ROUND_COLUMNS


def read_run(run_dir: str | Path) -> tuple[dict[str, Any], pd.DataFrame]:
    run_dir = Path(run_dir)
    meta = json.loads((run_dir / "meta.json").read_text())
    lines = [json.loads(x) for x in (run_dir / "rounds.jsonl").read_text().splitlines() if x.strip()]
    return meta, pd.DataFrame(lines)


def load_runs(run_dirs: Iterable[str | Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All rows of the given run folders as a typed frame, and a frame of the runs' status.

    Rows of runs whose status is not ``ok`` stay in the rows frame (with their status) so that tables
    can count them and figures can mark them; tables must filter on ``status`` explicitly.
    """
    frames, statuses = [], []
    for d in run_dirs:
        meta, rows = read_run(d)
        statuses.append(
            {
                "run_dir": str(d),
                "status": meta.get("status"),
                "reason": meta.get("reason"),
                "method": meta.get("config", {}).get("method", {}).get("name"),
                "seed": meta.get("config", {}).get("seed"),
                "config_hash": meta.get("config_hash"),
                "label": meta.get("config", {}).get("label", ""),
            }
        )
        if len(rows):
            for col, default in COLUMN_DEFAULTS.items():
                if col not in rows.columns:
                    rows[col] = default
            rows["status"] = meta.get("status")
            rows["run_dir"] = str(d)
            frames.append(rows)
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(ROUND_COLUMNS))
    for col, dtype in ROUND_COLUMNS.items():
        if col in df.columns:
            df[col] = df[col].astype(dtype)
    return df, pd.DataFrame(statuses)
