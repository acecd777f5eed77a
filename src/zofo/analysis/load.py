"""Run folders read back: ``load_runs`` turns folders in the results schema (``zofo.engine.record``)
into one typed frame of rows and one frame of the runs (status and what their ``meta.json`` records).

This is the only module that reads ``meta.json``. Each run's grid cell (the value of every grid axis
of its study that a row does not already carry, read from the run's recorded config) and its model
size (``parameters``, the pretrained model's weights as the engine recorded them) are attached here,
to every row and to the run's status, by ``grid_cell``: folder names carry the grid values too, but
only for the axes a study set, so the config is the record every run has.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from zofo.engine.record import COLUMN_DEFAULTS, ROUND_COLUMNS

# Grid axes (dotted RunConfig keys) whose value every row already holds, under the row column's name.
ROW_AXES: dict[str, str] = {
    "model.name": "model",
    "partition.alpha": "alpha",
    "partition.name": "partition",
    "byzantine.fraction": "byz_frac",
    "byzantine.attack": "attack",
    "aggregator.name": "aggregator",
}
# The model size of a run: the pretrained model's weights, whatever a method trains or adds. The one
# name for it in every frame and table; ``model.parameters`` in meta.json.
PARAMETERS = "parameters"


def read_run(run_dir: str | Path) -> tuple[dict[str, Any], pd.DataFrame]:
    run_dir = Path(run_dir)
    meta = json.loads((run_dir / "meta.json").read_text())
    lines = [json.loads(x) for x in (run_dir / "rounds.jsonl").read_text().splitlines() if x.strip()]
    return meta, pd.DataFrame(lines)


def grid_columns(axes: Iterable[str]) -> list[str]:
    """The columns ``grid_cell`` adds for a study's grid ``axes``: every axis that is not a row column,
    named by its dotted key, in name order, then ``parameters``."""
    return [*sorted({a for a in axes if a not in ROW_AXES}), PARAMETERS]


_MISSING = object()


def _dotted(node: Any, path: str) -> Any:
    # A dotted path through nested mappings; any missing step is "missing".
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _cell_value(value: Any) -> Any:
    # A missing or null value (an axis the run's method does not have, a null grid value that left
    # the default) is NaN; a list or mapping is its JSON text, so that the column can be a group key.
    if value is _MISSING or value is None:
        return math.nan
    if isinstance(value, Mapping | list):
        return json.dumps(value, sort_keys=True)
    return value


def grid_cell(meta: Mapping[str, Any] | None, axes: Iterable[str]) -> dict[str, Any]:
    """The run's grid cell: ``grid_columns(axes)`` -> value, each axis read from the recorded config
    and ``parameters`` from the recorded model. A run without them (no readable meta, a run written by
    another program) gets NaN, so runs of methods without a swept parameter can share a table."""
    meta = meta or {}
    cell = {axis: _cell_value(_dotted(meta.get("config", {}), axis)) for axis in grid_columns(axes)[:-1]}
    cell[PARAMETERS] = _cell_value(_dotted(meta, "model.parameters"))
    return cell


def cohort_size(meta: Mapping[str, Any]) -> float:
    """Clients per round as the engine used it: ``clients_per_round``, or all clients when null; NaN
    when the config gives neither."""
    cfg = meta.get("config", {})
    per_round = cfg.get("federation", {}).get("clients_per_round")
    clients = per_round if per_round is not None else cfg.get("partition", {}).get("num_clients")
    return math.nan if clients is None else int(clients)


def _keys_from_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    # What a row would have said, for runs that failed before their first row.
    cfg = meta.get("config", {})
    part = cfg.get("partition", {})
    name = part.get("name")
    return {
        "family": meta.get("method", {}).get("family"),
        "model": cfg.get("model", {}).get("name"),
        "task": cfg.get("task", {}).get("name"),
        "partition": name,
        # The engine writes alpha = inf for partitions without a concentration.
        "alpha": float(part["alpha"]) if name == "dirichlet" and "alpha" in part else math.inf,
        "byz_frac": float(cfg.get("byzantine", {}).get("fraction", COLUMN_DEFAULTS["byz_frac"])),
        "attack": cfg.get("byzantine", {}).get("attack", COLUMN_DEFAULTS["attack"]),
        "aggregator": cfg.get("aggregator", {}).get("name", COLUMN_DEFAULTS["aggregator"]),
        "metric_name": meta.get("task", {}).get("metric"),
    }


def load_runs(run_dirs: Iterable[str | Path], axes: Iterable[str] = ()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All rows of the given run folders as a typed frame, and a frame of the runs (one row each).

    Both frames carry each run's grid cell for the study's grid ``axes`` (``grid_cell``: one column per
    axis that is not a row column, and ``parameters`` always). The runs frame holds ``run_dir``,
    ``status``, ``reason``, ``method``, ``seed``, ``config_hash``, ``label``, the group keys as the
    config gives them (for runs that failed before their first row), ``cohort_size``, ``threads``,
    ``formula_up`` / ``formula_down`` (the bits each method's definition sends, NaN where the run
    records none) and ``config`` (the recorded config mapping, for the consistency checks).

    Rows of runs whose status is not ``ok`` stay in the rows frame (with their status) so that tables
    can count them and figures can mark them; tables must filter on ``status`` explicitly.
    """
    axes = list(axes)
    frames, statuses = [], []
    for d in run_dirs:
        meta, rows = read_run(d)
        cfg = meta.get("config", {})
        cell = grid_cell(meta, axes)
        formula = meta.get("formula_bits") or {}
        statuses.append(
            {
                "run_dir": str(d),
                "status": meta.get("status"),
                "reason": meta.get("reason"),
                "method": cfg.get("method", {}).get("name"),
                "seed": cfg.get("seed"),
                "config_hash": meta.get("config_hash"),
                "label": cfg.get("label", ""),
                **_keys_from_meta(meta),
                "cohort_size": cohort_size(meta),
                "threads": cfg.get("threads", math.nan),
                "formula_up": formula.get("uplink", math.nan),
                "formula_down": formula.get("downlink", math.nan),
                **cell,
                "config": cfg,
            }
        )
        if len(rows):
            for col, default in COLUMN_DEFAULTS.items():
                if col not in rows.columns:
                    rows[col] = default
            rows["status"] = meta.get("status")
            rows["run_dir"] = str(d)
            for col, value in cell.items():
                rows[col] = value
            frames.append(rows)
    empty = pd.DataFrame(columns=[*ROUND_COLUMNS, "status", "run_dir", *grid_columns(axes)])
    df = pd.concat(frames, ignore_index=True) if frames else empty
    for col, dtype in ROUND_COLUMNS.items():
        if col in df.columns:
            df[col] = df[col].astype(dtype)
    return df, pd.DataFrame(statuses)
