"""The contract every registered method keeps, checked for each name in METHODS. Nothing here lists the
methods or their settings: everything is read from the class (``uplink``, ``formula_bits``,
``test_params``), so a new method file, zofo's own or a plugin's, is checked with no edit here.

- the class declares what the engine and the suites read from it (a missing piece is named);
- client_update leaves the working model as it found it (ZO: within the restore tolerance; FO: exactly);
- payloads (up and down) survive the wire codec unchanged, have exactly the declared uplink fields, and
  their bits match the method's formula (each method's own tests pin its formula by hand);
- Params is a frozen, default-constructible dataclass;
- an engine run on tiny-llama writes meta.json (status ok) and rounds.jsonl with the schema's columns,
  and the logged bits_up / bits_down are the formula times clients and rounds.
"""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from conftest import (
    SMALL,
    ZO_RESTORE_ATOL,
    load_tiny_llama,
    max_abs_diff,
    read_rows,
    tiny_run_config,
    unique_trainable,
)

from zofo.analysis.load import load_runs, read_run
from zofo.assets.objectives import build_objective
from zofo.core.config import AggregatorConfig, ModelConfig, RunConfig, TaskConfig, ZOConfig, build
from zofo.core.registry import METHODS, TASKS
from zofo.core.seeds import numpy_rng
from zofo.engine.comm import transmit
from zofo.engine.loop import client_batches, run
from zofo.engine.record import ROUND_COLUMNS
from zofo.methods.base import ClientData, FederatedMethod, RunContext, declaration_problems
from zofo.robust.setting import validate_payload

METHOD_NAMES = METHODS.names()
WIDTH = {torch.bool: 1, torch.float32: 32, torch.bfloat16: 16, torch.float16: 16, torch.uint32: 32}


def method_params(name: str) -> dict:
    """The Params overrides the method's class declares for tests (``test_params``)."""
    return SMALL[name]


def stated_bits(method: FederatedMethod, d: int, n: int) -> tuple[int, int]:
    bits = method.formula_bits(d, n)
    if bits is None:
        pytest.fail(f"{type(method).__name__} states no formula_bits(d, n): the bits its paper says it sends")
    return bits


def wire_bits(payload: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * WIDTH[t.dtype] for t in payload.values())


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_the_class_declares_what_the_engine_and_the_suites_read(name):
    problems = declaration_problems(METHODS.get(name))
    assert not problems, f"method {name!r} lacks: " + "; ".join(problems)


TASK_CFG = TaskConfig(name="bbc-news", max_input_tokens=8)


@pytest.fixture(scope="module")
def bbc_task():
    """The task and 30 tokenised training rows (tokenisation does not depend on the model's weights)."""
    task = TASKS.get("bbc-news")(TASK_CFG)
    objective = build_objective(load_tiny_llama(), task, TASK_CFG)
    return task, objective.encode_split(task.splits["train"].select(range(0, 600, 20)))


class Setup:
    """A fresh tiny-llama, the bbc-news objective on it, and a method instance for ``name``."""

    def __init__(self, name: str, bbc, cohort: int = 3, mode: str = "fast", aggregator: str = "mean"):
        task, self.train = bbc
        self.objective = build_objective(load_tiny_llama(), task, TASK_CFG)
        self.model = self.objective.model
        self.cls: type[FederatedMethod] = METHODS.get(name)
        params = build(self.cls.Params, method_params(name), "method.params")
        ctx = RunContext(
            model=self.model,
            loss=self.objective.loss,
            zo=ZOConfig(eps=1e-3, mode=mode),
            seed=5,
            num_clients=cohort,
            cohort_size=cohort,
            aggregator=AggregatorConfig(name=aggregator),
        )
        self.method = self.cls(params, ctx)
        self.method.setup()
        self.shards = [list(range(k, len(self.train), cohort)) for k in range(cohort)]

    def client(self, k: int, r: int) -> ClientData:
        batches = client_batches(self.objective, self.train, self.shards[k], 2, numpy_rng(5, "t", r, k))
        return ClientData(client_id=k, num_examples=len(self.shards[k]), batches=batches)


def assert_payload_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_params_frozen_and_default_constructible(name):
    cls = METHODS.get(name)
    assert cls.family in ("zo", "fo")
    assert cls.reference, "every method records the paper or code it follows"
    assert dataclasses.is_dataclass(cls.Params)
    p = cls.Params()
    for f in dataclasses.fields(p):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(p, f.name, getattr(p, f.name))
    assert dataclasses.asdict(p) == dataclasses.asdict(cls.Params())
    json.dumps(dataclasses.asdict(p))  # stored in meta.json
    # Every key of the defaults is accepted back through the config path.
    rounds = cls.max_rounds or 10
    data = {"method": {"name": name, "params": dataclasses.asdict(p)}, "federation": {"rounds": rounds}}
    assert RunConfig.from_dict(data).method_params() == p


# ZO methods in both z modes; FO methods ignore zo.mode, so one run each.
NAME_MODES = [
    (name, mode)
    for name in METHOD_NAMES
    for mode in (("lean", "fast") if METHODS.get(name).family == "zo" else ("fast",))
]


@pytest.mark.parametrize(("name", "mode"), NAME_MODES)
def test_client_update_leaves_the_model_as_found(name, mode, bbc_task):
    s = Setup(name, bbc_task, mode=mode)
    params = list(s.model.parameters())
    start = [p.detach().clone() for p in params]
    for k in range(3):
        before = [p.detach().clone() for p in params]
        payload = s.method.client_update(1, s.client(k, 1))
        assert payload, "a client must send something"
        if s.cls.holds_between_clients:
            continue  # checked after end_round below (and per client in the method's own tests)
        for p, b in zip(params, before, strict=True):
            if s.cls.family == "fo":
                assert torch.equal(p.detach(), b), (
                    "an FO client_update must reload the global weights exactly"
                )
            else:
                torch.testing.assert_close(p.detach(), b, rtol=0, atol=ZO_RESTORE_ATOL)
    # A round whose payloads were all rejected ends here: the model must be the global one again.
    s.method.end_round(1)
    for p, b in zip(params, start, strict=True):
        if s.cls.family == "fo":
            assert torch.equal(p.detach(), b)
        else:
            torch.testing.assert_close(p.detach(), b, rtol=0, atol=3 * ZO_RESTORE_ATOL)
    json.dumps(s.method.describe())
    assert isinstance(s.method.local_steps(), int) and s.method.local_steps() >= 1


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_payloads_round_trip_and_bits_match_formula(name, bbc_task):
    s = Setup(name, bbc_task, cohort=3)
    # d counts what the method trains after setup (LoRA adapters for fedavg-lora, else the whole model)
    up, down = stated_bits(s.method, sum(p.numel() for p in unique_trainable(s.model)), 3)
    before = [p.detach().clone() for p in s.model.parameters()]
    received = []
    for k in range(3):
        payload = s.method.client_update(1, s.client(k, 1))
        got, bits = transmit(payload)
        assert_payload_equal(got, payload)
        assert bits == wire_bits(payload) == up, f"{name}: uplink {bits} bits, formula says {up}"
        # What an honest client sends passes the server's validation (else every run would reject all).
        assert validate_payload(got, s.method.payload_spec(1, k)) is None
        assert s.method.check_payload(1, k, got) is None
        assert set(got) == set(s.cls.uplink_fields(s.method.params)), "uplink must declare every field sent"
        received.append(got)
    broadcast = s.method.aggregate(1, received)
    got, bits = transmit(broadcast)
    assert_payload_equal(got, broadcast)
    assert bits == wire_bits(broadcast) == down, f"{name}: downlink {bits} bits, formula says {down}"
    assert max_abs_diff(s.model, before) > 0, "aggregate must update the global model"


# ---- end to end ---------------------------------------------------------------------------------------

E2E_ROUNDS, E2E_EVAL_EVERY, E2E_COHORT = 3, 2, 2  # rows at rounds 0, 2 (two rounds' bits) and 3 (one)


def e2e_plan(name: str) -> tuple[int, int, int]:
    """(rounds, eval_every, cohort) of the end-to-end run: one-shot methods get their single round with
    every client (the tiny config has 3), the others 3 rounds with a cohort of 2 of 3 clients."""
    if METHODS.get(name).max_rounds == 1:
        return 1, 1, 3
    return E2E_ROUNDS, E2E_EVAL_EVERY, E2E_COHORT


@pytest.fixture(scope="module", params=METHOD_NAMES)
def e2e_run(request, tmp_path_factory):
    name = request.param
    rounds, every, cohort = e2e_plan(name)
    data = tiny_run_config(
        name,
        method_params(name),
        federation={"rounds": rounds, "eval_every": every, "clients_per_round": cohort},
    )
    out = run(RunConfig.from_dict(data), tmp_path_factory.mktemp(name) / "run", progress=False)
    return name, out


def test_e2e_writes_meta_and_rounds_with_schema(e2e_run):
    name, out = e2e_run
    meta = json.loads((out / "meta.json").read_text())
    assert meta["status"] == "ok", meta.get("reason")
    assert meta["method"]["name"] == name
    assert meta["method"]["family"] == METHODS.get(name).family
    rows = read_rows(out)
    rounds, every, _ = e2e_plan(name)
    assert [r["round"] for r in rows] == sorted({0, *range(every, rounds + 1, every), rounds})
    types = {"string": str, "int64": int, "float64": (float, int)}
    for r in rows:
        missing = set(ROUND_COLUMNS) - set(r)
        assert not missing, f"rounds.jsonl row lacks schema columns {sorted(missing)}"
        for col, dtype in ROUND_COLUMNS.items():
            if r[col] is None:
                # No training loss before training (nor for a method that computes none, checked below);
                # no device memory counter on the CPU.
                assert col == "train_loss" or (col == "peak_device_mb" and r["device"] == "cpu"), (
                    f"{col} is null in round {r['round']}"
                )
                continue
            assert isinstance(r[col], types[dtype]) and not isinstance(r[col], bool), (col, r[col])
        assert r["method"] == name and r["model"] == "tiny-llama" and r["task"] == "bbc-news"
        assert math.isfinite(r["eval_loss"]) and 0.0 <= r["metric"] <= 1.0
    # A method that computes no training loss logs none in any round; one that does, a finite one in each.
    losses = [r["train_loss"] for r in rows[1:]]
    assert losses == [None] * len(losses) or all(x is not None and math.isfinite(x) for x in losses), losses
    df, status = load_runs([out])
    assert len(df) == len(rows) and list(status["status"]) == ["ok"]
    _, frame = read_run(out)
    assert set(ROUND_COLUMNS) <= set(frame.columns)


def test_e2e_logged_bits_match_formula(e2e_run):
    name, out = e2e_run
    meta = json.loads((out / "meta.json").read_text())
    d = meta["model"]["trainable_parameters"]
    assert 0 < d <= sum(p.numel() for p in unique_trainable(load_tiny_llama().model))
    _, _, cohort = e2e_plan(name)
    # The formula the engine recorded for the communication table's check is the method's own.
    assert meta["formula_bits"] is not None, f"{name}: the run recorded no formula_bits"
    up, down = meta["formula_bits"]["uplink"], meta["formula_bits"]["downlink"]
    rows = read_rows(out)
    prev_round, cum_up, cum_down = 0, 0, 0
    for r in rows:
        rounds_since = r["round"] - prev_round
        assert r["bits_up"] == rounds_since * cohort * up, (name, r["round"], r["bits_up"])
        # A client returning after a missed round first downloads what it missed: on top of the
        # per-round formula, in its own column (tests/methods/test_catch_up.py counts it by hand).
        assert r["bits_down"] - r["bits_catch_up"] == rounds_since * cohort * down, (name, r["round"], r)
        cum_up += r["bits_up"]
        cum_down += r["bits_down"]
        assert r["bits_up_cum"] == cum_up and r["bits_down_cum"] == cum_down
        prev_round = r["round"]
    assert rows[1]["local_steps_total"] > 0
    if len(rows) > 2:
        assert rows[-1]["local_steps_total"] > rows[1]["local_steps_total"]


def test_model_config_default_is_not_used_by_the_e2e_helper():
    """Guard: the e2e helper must stay on the tiny random model (seconds, no assets)."""
    assert tiny_run_config("feedsign")["model"] == {"name": "tiny-llama"}
    assert ModelConfig().name != "tiny-llama"
