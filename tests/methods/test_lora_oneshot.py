"""Defining properties of FedAvg-LoRA (only adapters travel, the base never moves) and one-shot FL
(exactly one round, 1/R of the bits of the paired R-round FedAvg at equal local compute)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import read_rows, tiny_run_config

from zofo.core.config import RunConfig
from zofo.core.errors import ConfigError
from zofo.engine.loop import run


def test_lora_uplink_is_the_adapter_and_the_base_never_changes(tmp_path: Path) -> None:
    from zofo.assets.models import load_model
    from zofo.core.config import ModelConfig

    data = tiny_run_config(
        "fedavg-lora",
        {"lr": 1e-2, "local_steps": 2, "r": 4, "alpha": 8},
        federation={"rounds": 2, "eval_every": 1},
    )
    cfg = RunConfig.from_dict(data)
    out = run(cfg, tmp_path / "lora", progress=False)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["status"] == "ok", meta.get("reason")

    # The adapter size from first principles: r * (in + out) per adapted Linear (q_proj, v_proj).
    base = load_model(ModelConfig(name="tiny-llama"), seed=cfg.seed).model
    adapted = [m for n, m in base.named_modules() if n.rsplit(".", 1)[-1] in ("q_proj", "v_proj")]
    adapter = sum(4 * (m.in_features + m.out_features) for m in adapted)
    assert meta["model"]["trainable_parameters"] == adapter
    # The model's size is the pretrained model's, whatever the method trains or adds.
    assert meta["model"]["parameters"] == sum(p.numel() for p in base.parameters())
    clients = cfg.partition.num_clients
    for r in read_rows(out)[1:]:
        assert r["bits_up"] == clients * (32 * adapter + 32)
        assert r["bits_down"] == clients * 32 * adapter


def test_exact_lora_averaging_runs_end_to_end_and_counts_the_residuals(tmp_path: Path) -> None:
    """Through the engine, as `zofo run` runs it: the downlink carries the adapters and the residuals."""
    data = tiny_run_config(
        "fedavg-lora",
        {"lr": 1e-2, "local_steps": 2, "r": 4, "alpha": 8, "averaging": "exact"},
        federation={"rounds": 2, "eval_every": 1},
    )
    out = run(RunConfig.from_dict(data), tmp_path / "exact", progress=False)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["status"] == "ok", meta.get("reason")
    adapter, residual = meta["describe"]["adapter_parameters"], meta["describe"]["residual_parameters"]
    assert residual > 0
    clients = data["partition"]["num_clients"]
    for r in read_rows(out)[1:]:
        assert r["bits_up"] == clients * (32 * adapter + 32)
        assert r["bits_down"] == clients * 32 * (adapter + residual)


def lora_round(averaging: str, seed: int = 3):
    """Two clients' local training and one aggregation of FedAvg-LoRA on the tiny model.

    Returns (model, method, per-client adapter tensors by name, base weights before, downlink bits)."""
    from conftest import load_tiny_llama

    from zofo.assets.objectives import build_objective
    from zofo.core.config import TaskConfig, ZOConfig, build
    from zofo.core.registry import METHODS, TASKS
    from zofo.core.seeds import numpy_rng
    from zofo.engine.comm import transmit
    from zofo.engine.loop import client_batches
    from zofo.methods.base import ClientData, RunContext

    task_cfg = TaskConfig(name="bbc-news", max_input_tokens=8)
    task = TASKS.get("bbc-news")(task_cfg)
    obj = build_objective(load_tiny_llama(), task, task_cfg)
    train = obj.encode_split(task.splits["train"].select(range(40)))
    cls = METHODS.get("fedavg-lora")
    params = build(cls.Params, {"lr": 5e-2, "local_steps": 3, "averaging": averaging}, "method.params")
    ctx = RunContext(model=obj.model, loss=obj.loss, zo=ZOConfig(), seed=seed, num_clients=2, cohort_size=2)
    method = cls(params, ctx)
    method.setup()
    base_before = {n: p.detach().clone() for n, p in obj.model.named_parameters() if "lora_" not in n}
    adapters = {n: p for n, p in obj.model.named_parameters() if p.requires_grad}
    payloads, clients = [], []
    for k in range(2):
        # Different shard sizes, so the example weights are not uniform.
        shard = list(range(k, 40, 2)) if k == 0 else list(range(1, 16, 2))
        batches = client_batches(obj, train, shard, 4, numpy_rng(0, k))
        payload = method.client_update(1, ClientData(k, len(shard), batches, batch_size=4))
        received = transmit(payload)[0]
        payloads.append(received)
        # The client's adapters = global adapters + its update, unflattened in parameter order.
        flat, offset, mine = received["update"], 0, {}
        for n, t in adapters.items():
            mine[n] = t.detach() + flat[offset : offset + t.numel()].view_as(t)
            offset += t.numel()
        clients.append((len(shard), mine))
    down_bits = transmit(method.aggregate(1, payloads))[1]
    return obj.model, method, clients, base_before, down_bits


def effective_and_client_mean(model, clients, base_before):
    """Per adapted layer: (W_base + s B A of the global model, W0 + s * weighted mean of B_i A_i)."""
    from peft.tuners.lora import LoraLayer

    total = sum(w for w, _ in clients)
    out = {}
    for name, module in model.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        s = module.scaling["default"]
        a, b = f"{name}.lora_A.default.weight", f"{name}.lora_B.default.weight"
        effective = module.get_base_layer().weight + s * (
            module.lora_B["default"].weight @ module.lora_A["default"].weight
        )
        mean = base_before[f"{name}.base_layer.weight"] + s * sum(
            (w / total) * (c[b] @ c[a]) for w, c in clients
        )
        out[name] = (effective.detach(), mean)
    return out


def test_lora_rounds_train_adapters_and_leave_base_weights_bitwise_equal() -> None:
    model, _, _, base_before, _ = lora_round("separate")
    after = dict(model.named_parameters())
    for n, v in base_before.items():
        assert torch.equal(after[n], v), f"base weight {n} changed"
    # B starts at zero (peft): a non-zero B after the round means the adapters trained.
    assert any(bool(v.abs().sum() > 0) for n, v in after.items() if "lora_B" in n), "adapters did not train"


def test_exact_lora_averaging_gives_the_mean_of_the_clients_models_and_separate_does_not() -> None:
    model, method, clients, base_before, down_bits = lora_round("exact")
    gaps = []
    for name, (effective, mean) in effective_and_client_mean(model, clients, base_before).items():
        torch.testing.assert_close(effective, mean, rtol=0, atol=1e-6, msg=f"{name}: not the mean model")
        gaps.append(float((effective - base_before[f"{name}.base_layer.weight"]).abs().max()))
    assert max(gaps) > 1e-4, "the clients barely trained: the check above would hold for any averaging"
    # The downlink carries the averaged adapters and one dense residual per adapted layer.
    adapter = sum(p.numel() for p in model.parameters() if p.requires_grad)
    residual = sum(v.numel() for n, v in base_before.items() if n.endswith("base_layer.weight"))
    assert down_bits == 32 * (adapter + residual)

    # A restarted run rebuilds the same global model from w0, the adapters and the saved residuals.
    state = method.state_dict()
    weights = [p.detach().clone() for p in method.trainable]
    model2, method2, _, _, _ = lora_round("exact")  # a fresh model whose own round is overwritten below
    with torch.no_grad():
        for n, p in model2.named_parameters():
            if "lora_" not in n:
                p.copy_(base_before[n])
        for p, w in zip(method2.trainable, weights, strict=True):
            p.copy_(w)
    method2.load_state_dict(state)
    for n, p in model.named_parameters():
        torch.testing.assert_close(dict(model2.named_parameters())[n], p, rtol=0, atol=0)

    # Averaging A and B separately misses the clients' covariance: the same check fails.
    model, _, clients, base_before, _ = lora_round("separate")
    misses = [
        float((effective - mean).abs().max())
        for effective, mean in effective_and_client_mean(model, clients, base_before).values()
    ]
    assert max(misses) > 1e-5


def test_oneshot_refuses_more_than_one_round() -> None:
    with pytest.raises(ConfigError) as err:
        RunConfig.from_dict(tiny_run_config("oneshot", federation={"rounds": 2}))
    assert err.value.key == "federation.rounds"


def test_oneshot_is_one_round_with_1_over_R_the_bits_of_the_paired_fedavg(tmp_path: Path) -> None:
    R, E = 2, 1.0
    one = run(
        RunConfig.from_dict(
            tiny_run_config(
                "oneshot",
                {"lr": 1e-3, "local_epochs": E},
                federation={"rounds": 1, "eval_every": 1, "batch_size": 4},
            )
        ),
        tmp_path / "oneshot",
        progress=False,
    )
    multi = run(
        RunConfig.from_dict(
            tiny_run_config(
                "fedavg",
                {"lr": 1e-3, "local_epochs": E / R},
                federation={"rounds": R, "eval_every": 1, "batch_size": 4},
            )
        ),
        tmp_path / "fedavg",
        progress=False,
    )
    one_rows, multi_rows = read_rows(one), read_rows(multi)
    assert [r["round"] for r in one_rows] == [0, 1]  # exactly one communication round
    # FedAvg's count, by hand: d fp32 update values and a uint32 example count up, the d weights down.
    d = json.loads((multi / "meta.json").read_text())["model"]["trainable_parameters"]
    clients = json.loads((one / "meta.json").read_text())["config"]["partition"]["num_clients"]
    assert multi_rows[1]["bits_up"] == clients * (32 * d + 32)
    assert multi_rows[1]["bits_down"] == clients * 32 * d
    assert multi_rows[-1]["bits_up_cum"] == R * one_rows[-1]["bits_up_cum"]
    assert multi_rows[-1]["bits_down_cum"] == R * one_rows[-1]["bits_down_cum"]
    # equal local compute: ceil(E n / B) against R * ceil(E n / (R B)) steps, at most R - 1 apart per client
    gap = multi_rows[-1]["local_steps_total"] - one_rows[-1]["local_steps_total"]
    assert 0 <= gap <= (R - 1) * clients
