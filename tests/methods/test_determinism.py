"""Bit-for-bit determinism: the same config and seed give identical rounds.jsonl for every method.

Timing and memory columns are measurements of the machine, not of the run, and are left out.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import SMALL, tiny_run_config

from zofo.core.config import RunConfig
from zofo.core.registry import METHODS
from zofo.engine.loop import run

MACHINE_COLUMNS = {"client_seconds", "server_seconds", "eval_seconds", "peak_rss_mb", "peak_device_mb"}


def rows_without_timing(out: Path) -> list[dict]:
    rows = [json.loads(x) for x in (out / "rounds.jsonl").read_text().splitlines() if x.strip()]
    return [{k: v for k, v in r.items() if k not in MACHINE_COLUMNS} for r in rows]


@pytest.mark.parametrize("name", METHODS.names())
def test_same_seed_same_rounds_jsonl(name: str, tmp_path: Path) -> None:
    params = SMALL[name]
    rounds = METHODS.get(name).max_rounds or 2
    cfg = RunConfig.from_dict(tiny_run_config(name, params, federation={"rounds": rounds, "eval_every": 1}))
    a = run(cfg, tmp_path / "a", progress=False)
    torch.manual_seed(12345)  # disturbing the global RNG between runs must not matter
    torch.rand(7)
    b = run(cfg, tmp_path / "b", progress=False)
    rows_a, rows_b = rows_without_timing(a), rows_without_timing(b)
    assert len(rows_a) == rounds + 1
    assert rows_a == rows_b
    # the serialised rows, not only the parsed values, are identical
    dump = [json.dumps(r, sort_keys=True) for r in rows_a]
    assert dump == [json.dumps(r, sort_keys=True) for r in rows_b]


def test_a_different_seed_gives_different_rows(tmp_path: Path) -> None:
    cfgs = [RunConfig.from_dict(tiny_run_config("feedsign", {"lr": 1e-2}, seed=s)) for s in (0, 1)]
    rows = [rows_without_timing(run(c, tmp_path / str(c.seed), progress=False)) for c in cfgs]
    assert [r["eval_loss"] for r in rows[0]] != [r["eval_loss"] for r in rows[1]]
