"""The one fake-run builder of the tests: run folders in the results schema, written by the engine's own
``RunWriter``, whose every number is given by the test, so that expected tables and figures can be
worked out by hand."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from zofo.analysis import tables
from zofo.analysis.load import grid_columns, load_runs
from zofo.engine.record import RunWriter
from zofo.grid.study import deep_merge

FAMILY = {
    "fedavg": "fo",
    "fedavg-lora": "fo",
    "oneshot": "fo",
    "ferret": "fo",
    "fedkseed": "zo",
    "fedkseed-pro": "zo",
    "feedsign": "zo",
    "zo-fedsgd": "zo",
    "my_method": "zo",
}


def make_run(
    root: Path,
    method: str,
    seed: int,
    metrics: Sequence[float],
    *,
    name: str | None = None,
    status: str = "ok",
    eval_every: int = 2,
    rounds: int = 4,
    model: str = "tiny",
    parameters: int | None = 1000,
    alpha: float = 0.5,
    num_clients: int = 4,
    clients_per_round: int | None = None,
    byz_frac: float = 0.0,
    attack: str = "none",
    aggregator: str = "mean",
    label: str = "",
    threads: int = 1,
    params: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    up_bits: int = 0,
    down_bits: int | None = None,
    bits_up_cum: Sequence[int] | None = None,
    formula: tuple[int, int] | None = None,
    catch_up_cum: Sequence[int] | None = None,
    rejected_cum: Sequence[int] | None = None,
    client: Sequence[float] | None = None,
    server: Sequence[float] | None = None,
    evals: Sequence[float] | None = None,
    rss: Sequence[float] | None = None,
    eval_loss: Sequence[float] | None = None,
) -> Path:
    """A run folder ``root/name`` as the engine writes it: ``metrics[i]`` at round ``i * eval_every``.

    ``rounds`` is only the configured number (a diverged run writes fewer rows than it asks for); an
    empty ``metrics`` is a run that failed before its first row. Bits: each trained round every client
    of the cohort (``clients_per_round``, else all ``num_clients``) sends ``up_bits`` up and receives
    ``down_bits`` (default: as many), unless ``bits_up_cum`` gives the cumulative uplink per row
    (downlink then 0); ``catch_up_cum`` adds returning clients' catch-up downloads, cumulative per row
    (bits_catch_up is each row's share), to the downlink. Per-row lists (``rejected_cum``, seconds,
    ``rss``, ``eval_loss``) default to zeros / absent.
    ``parameters=None`` leaves the model size out of meta.json (a run written by another program);
    ``config`` is laid over the run's config (a grid value, ``device``, ``dtype``); ``alpha=inf`` is an
    iid partition.
    """
    iid = math.isinf(alpha)
    partition: dict[str, Any] = {"name": "iid" if iid else "dirichlet", "num_clients": num_clients}
    if not iid:
        partition["alpha"] = alpha
    cfg = {
        "model": {"name": model},
        "task": {"name": "toy"},
        "partition": partition,
        "federation": {"rounds": rounds, "eval_every": eval_every, "clients_per_round": clients_per_round},
        "method": {"name": method, "params": dict(params or {"lr": 1e-3})},
        "byzantine": {"fraction": byz_frac, "attack": attack},
        "aggregator": {"name": aggregator},
        "seed": seed,
        "threads": threads,
        "label": label,
    }
    cfg = deep_merge(cfg, config or {})
    config_hash = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]
    meta: dict[str, Any] = {
        "config": cfg,
        "config_hash": config_hash,
        "method": {"name": method, "family": FAMILY[method]},
        "task": {"name": "toy", "metric": "accuracy"},
        "formula_bits": None if formula is None else {"uplink": formula[0], "downlink": formula[1]},
    }
    if parameters is not None:
        meta["model"] = {"name": model, "parameters": parameters, "trainable_parameters": parameters}
    out = root / (name or f"{method}-{model}-a{alpha}-b{byz_frac}-{aggregator}-{label or 'x'}-s{seed}")
    writer = RunWriter(out, meta)
    cohort = clients_per_round or num_clients
    zeros = [0.0] * len(metrics)
    caught_up = [0, *(catch_up_cum or [0] * len(metrics))]
    for i, metric in enumerate(metrics):
        rnd = i * eval_every
        up = int(bits_up_cum[i]) if bits_up_cum is not None else up_bits * cohort * rnd
        per_client_down = up_bits if down_bits is None else down_bits
        down = 0 if bits_up_cum is not None else per_client_down * cohort * rnd
        down += caught_up[i + 1]
        row = {
            "method": method,
            "family": FAMILY[method],
            "model": model,
            "task": "toy",
            "partition": partition["name"],
            "alpha": math.inf if iid else alpha,
            "num_clients": num_clients,
            "byz_frac": byz_frac,
            "attack": attack,
            "aggregator": aggregator,
            "seed": seed,
            "round": rnd,
            "metric_name": "accuracy",
            "metric": metric,
            "bits_up": 0,
            "bits_down": 0,
            "bits_up_cum": up,
            "bits_down_cum": down,
            "bits_catch_up": caught_up[i + 1] - caught_up[i],
            "rejected_cum": int((rejected_cum or [0] * len(metrics))[i]),
            "client_seconds": (client or zeros)[i],
            "server_seconds": (server or zeros)[i],
            "eval_seconds": (evals or zeros)[i],
            "peak_rss_mb": (rss or zeros)[i],
            "label": label,
            "config_hash": config_hash,
        }
        if eval_loss is not None:
            row["eval_loss"] = eval_loss[i]
        writer.add_row(row)
    writer.finish(status)
    return out


def run_tables(run_dirs: Sequence[Path], axes: Sequence[str] = ()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The run table and the curve table of ``run_dirs`` as the workflow's run-table step makes them
    (grid columns for ``axes``), read back from CSV as every later step reads them."""
    rows, status = load_runs(run_dirs, axes)
    grid = grid_columns(axes)
    out = Path(run_dirs[0]).parent if run_dirs else Path(".")
    tables.write_csv(tables.run_table(rows, status, grid), out / "runs.csv")
    tables.write_csv(tables.curve_table(rows, grid), out / "curves.csv")
    return tables.read_table(out / "runs.csv"), tables.read_table(out / "curves.csv")
