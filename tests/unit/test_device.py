"""Devices and precision: the device and dtype keys, every method in bfloat16 through the engine, the
ZO restore bound in bfloat16, float32 losses, the fit check, and what rows and meta.json record.

Tests parametrised over ``devices()`` run on the CPU everywhere and on CUDA where the machine has it;
``gpu``-marked tests need CUDA and are deselected by default (``pytest -m gpu`` runs them)."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import pytest
import torch
from conftest import SMALL, devices, read_rows, tiny_run_config
from fakes import make_run, run_tables

from zofo.analysis.load import load_runs
from zofo.assets.models import load_model, parameter_count
from zofo.assets.objectives import build_objective
from zofo.core.config import ModelConfig, RunConfig, TaskConfig
from zofo.core.device import (
    MEMORY_FACTORS,
    check_memory,
    forked_rng,
    peak_device_memory_mb,
    required_memory_bytes,
    resolve_device,
    restore_location,
    torch_dtype,
)
from zofo.core.errors import ConfigError, ZofoError
from zofo.core.registry import METHODS, TASKS
from zofo.core.zo import SeededDirections, trainable_parameters
from zofo.engine.loop import run

GiB = 2**30


# ---- configuration ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["gpu", "cuda:", "cuda:x", "CPU", "tpu", ""])
def test_a_bad_device_name_is_refused_naming_key_value_and_what_is_allowed(bad: str) -> None:
    with pytest.raises(ConfigError) as e:
        RunConfig.from_dict({"device": bad})
    assert e.value.key == "device" and e.value.value == bad
    assert "cuda:N" in e.value.allowed and "mps" in e.value.allowed


@pytest.mark.parametrize("bad", ["fp16", "float64", "half", "bf16"])
def test_a_bad_dtype_is_refused_naming_key_value_and_what_is_allowed(bad: str) -> None:
    with pytest.raises(ConfigError) as e:
        RunConfig.from_dict({"dtype": bad})
    assert e.value.key == "dtype" and e.value.value == bad
    assert "bfloat16" in e.value.allowed and "float16" in e.value.allowed
    with pytest.raises(ConfigError, match="dtype"):  # built directly, not from a mapping
        RunConfig(dtype=bad)  # type: ignore[arg-type]


def test_device_is_not_part_of_a_runs_identity_and_a_reduced_dtype_is() -> None:
    base = RunConfig()
    assert RunConfig(device="cuda:1").hash() == RunConfig(device="cpu").hash() == base.hash()
    assert RunConfig(dtype="float32").hash() == base.hash()
    assert len({base.hash(), RunConfig(dtype="bfloat16").hash(), RunConfig(dtype="float16").hash()}) == 3
    assert RunConfig.from_dict(base.to_dict()) == base  # the new keys round-trip through a mapping


def test_resolve_device_and_dtype() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    auto = resolve_device("auto")
    if torch.cuda.is_available():
        assert auto == torch.device("cuda", torch.cuda.current_device())
        assert resolve_device("cuda").index is not None  # rows say "cuda:0", never bare "cuda"
    elif torch.backends.mps.is_available():
        assert auto == torch.device("mps")
    else:
        assert auto == torch.device("cpu")
    assert [torch_dtype(n) for n in ("float32", "bfloat16", "float16")] == [
        torch.float32,
        torch.bfloat16,
        torch.float16,
    ]


def test_a_device_this_machine_lacks_is_a_config_error_naming_what_it_has() -> None:
    # No machine has 100 GPUs; one without CUDA has none at all.
    with pytest.raises(ConfigError) as e:
        resolve_device("cuda:99")
    assert e.value.key == "device" and e.value.value == "cuda:99"
    assert "this machine has ['cpu'" in e.value.allowed
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="this machine has"):
            resolve_device("cuda")
    if not torch.backends.mps.is_available():
        with pytest.raises(ConfigError, match="this machine has"):
            resolve_device("mps")


# ---- the fit check ---------------------------------------------------------------------------------


def test_the_fit_check_refuses_a_model_the_device_cannot_hold() -> None:
    cuda = torch.device("cuda", 0)  # a device object only: free memory is injected, nothing is queried
    seven_b = 7_000_000_000
    needed = required_memory_bytes(seven_b, torch.bfloat16, 1.1)
    assert needed == math.ceil(seven_b * 2 * 1.1)  # parameters x bytes per element x factor
    assert check_memory(seven_b, torch.bfloat16, 1.1, cuda, free_bytes=needed) == needed  # just fits
    with pytest.raises(ZofoError) as e:
        check_memory(seven_b, torch.bfloat16, 1.1, cuda, free_bytes=needed - 1)
    message = str(e.value)
    assert f"{needed / GiB:.2f} GiB" in message and f"{(needed - 1) / GiB:.2f} GiB free" in message
    assert "7,000,000,000 parameters x 2 bytes (bfloat16) x 1.1" in message
    # First-order training in float32: 4 bytes a weight, 4 copies of the model.
    with pytest.raises(ZofoError, match="x 4 bytes \\(float32\\) x 4"):
        check_memory(seven_b, torch.float32, MEMORY_FACTORS["fo"], cuda, free_bytes=80 * GiB)


def test_the_fit_check_only_warns_on_the_cpu(capsys) -> None:
    needed = check_memory(10**9, torch.float32, 4.0, torch.device("cpu"), free_bytes=GiB)
    assert needed == 16 * 10**9
    assert "warning" in capsys.readouterr().err


def test_the_engine_refuses_a_run_that_cannot_fit_before_loading_it(tmp_path: Path, monkeypatch) -> None:
    import zofo.engine.loop as simulate

    # A CUDA device with 1 byte free, on any machine: the check reads nothing from the hardware.
    monkeypatch.setattr(simulate, "resolve_device", lambda name: torch.device("cuda", 0))
    monkeypatch.setattr(simulate, "check_memory", functools.partial(check_memory, free_bytes=1))
    monkeypatch.setattr(simulate, "prepare", lambda cfg: pytest.fail("weights loaded before the check"))
    cfg = RunConfig.from_dict(tiny_run_config("fedavg"))
    with pytest.raises(ZofoError, match="does not fit") as e:
        run(cfg, tmp_path / "run", progress=False)
    # tiny-llama's count, float32, and FedAvg's factor for AdamW and a cohort of 3: 4 + 2 + 3
    assert f"{parameter_count(cfg.model):,} parameters x 4 bytes (float32) x 9)" in str(e.value)
    assert not (tmp_path / "run").exists()


def test_memory_factors_count_what_each_method_keeps() -> None:
    from zofo.core.config import ZOConfig, build

    for name in METHODS.names():
        cls = METHODS.get(name)
        params = build(cls.Params, {}, "method.params")
        lean = cls.memory_factor(params, ZOConfig(mode="lean"), 5)
        fast = cls.memory_factor(params, ZOConfig(mode="fast"), 5)
        assert lean >= 1.0 and fast >= lean, name
        if cls.family == "zo":
            assert lean < 2.5 and fast > lean, f"{name}: fast mode caches z, a model-sized buffer"
    fedavg = METHODS.get("fedavg")
    p = build(fedavg.Params, {}, "method.params")
    # The server holds every decoded update of the cohort.
    assert fedavg.memory_factor(p, ZOConfig(), 10) - fedavg.memory_factor(p, ZOConfig(), 2) == 8
    lora = METHODS.get("fedavg-lora")
    assert lora.memory_factor(build(lora.Params, {}, "method.params"), ZOConfig(), 10) < 2


def test_parameter_count_matches_the_loaded_model_without_loading_it() -> None:
    for cfg in (ModelConfig(name="tiny-llama"), ModelConfig(name="tiny-llama", layers=1)):
        loaded = load_model(cfg)
        assert parameter_count(cfg) == sum(p.numel() for p in loaded.model.parameters()), cfg
    assert parameter_count(ModelConfig(name="tiny-llama", layers=1)) < parameter_count(
        ModelConfig(name="tiny-llama")
    )


# ---- models, objectives, generators ----------------------------------------------------------------


@pytest.mark.parametrize("device", devices())
def test_load_model_puts_weights_in_the_dtype_on_the_device(device: str) -> None:
    ref = load_model(ModelConfig(name="tiny-llama"), seed=4).model
    loaded = load_model(ModelConfig(name="tiny-llama"), seed=4, device=device, dtype=torch.bfloat16).model
    for p, r in zip(loaded.parameters(), ref.parameters(), strict=True):
        assert p.dtype == torch.bfloat16 and p.device.type == device
        # the same seed's weights on every device, rounded once to the dtype
        assert torch.equal(p.detach().cpu(), r.detach().to(torch.bfloat16))
    # buffers keep the precision they are computed in (rotary frequencies stay float32)
    assert {b.dtype for b in loaded.buffers()} == {torch.float32}


def _objective(model: str, task: str, device: str, dtype: torch.dtype):
    cfg = TaskConfig(name=task, max_input_tokens=8, max_new_tokens=4)
    t = TASKS.get(task)(cfg)
    objective = build_objective(load_model(ModelConfig(name=model), device=device, dtype=dtype), t, cfg)
    rows = list(objective.encode_split(t.splits["train"].select(range(4))))
    return objective, objective.collate(rows)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize(
    ("model", "task"),
    [("tiny-llama", "bbc-news"), ("tiny-bert", "bbc-news"), ("tiny-llama", "chatterbot")],
    ids=["label-words", "encoder-head", "generation"],
)
def test_losses_are_float32_on_a_bfloat16_model(model: str, task: str, device: str) -> None:
    objective, batch = _objective(model, task, device, torch.bfloat16)
    assert {p.dtype for p in objective.model.parameters()} == {torch.bfloat16}  # the head too
    assert all(v.device.type == "cpu" for v in batch.values())  # collated on the CPU ...
    loss = objective.loss(batch)  # ... and moved by the objective
    assert loss.dtype == torch.float32 and loss.device.type == device and math.isfinite(float(loss.detach()))
    loss.backward()  # first-order methods differentiate it
    grads = [p.grad for p in objective.model.parameters() if p.grad is not None]
    assert grads and all(g.dtype == torch.bfloat16 for g in grads)


def bf16_ulp(x: torch.Tensor) -> torch.Tensor:
    """One bfloat16 ulp of |x| (x >= the smallest normal), in float32: 2^-7 * 2^floor(log2 |x|)."""
    x = x.float().abs().clamp(min=torch.finfo(torch.bfloat16).tiny)
    return torch.finfo(torch.bfloat16).eps * torch.exp2(torch.floor(torch.log2(x)))


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("mode", ["lean", "fast"])
def test_zo_restore_in_bfloat16_stays_within_the_documented_bound(device: str, mode: str) -> None:
    """perturb(+1), perturb(-2), perturb(+1) in bfloat16: each add_ rounds once, to half an ulp of a
    value no larger than |w| + 2 eps |z|, so the restored weight is within 1.5 ulp of that (the bound in
    zofo.assets.objectives' docstring); and l+ and l- are float32 numbers that differ."""
    eps = 1e-3
    objective, batch = _objective("tiny-llama", "bbc-news", device, torch.bfloat16)
    params = trainable_parameters(objective.model)
    dirs = SeededDirections(params, eps, mode)
    for seed in (3, 11):
        before = [p.detach().clone() for p in params]
        z = list(SeededDirections(params, eps, "lean").z(seed))
        with torch.no_grad():
            dirs.perturb(seed, 1.0)
            l_plus = objective.loss(batch)
            dirs.perturb(seed, -2.0)
            l_minus = objective.loss(batch)
            dirs.perturb(seed, 1.0)
        assert l_plus.dtype == l_minus.dtype == torch.float32
        assert float(l_plus) != float(l_minus), "the perturbation was rounded away"
        drifted = 0
        for p, w, zz in zip(params, before, z, strict=True):
            assert p.dtype == torch.bfloat16
            drift = (p.detach().float() - w.float()).abs()
            bound = 1.5 * bf16_ulp(w.float().abs() + 2 * eps * zz.float().abs())
            assert bool((drift <= bound).all()), f"drift {float((drift / bound).max()):.2f}x the bound"
            # the check has teeth: a restore left out would move the embedding by eps |z| >> the bound
            missing = (eps * zz.float()).abs()
            if p.numel() > 10_000:
                assert bool((missing > bound).float().mean() > 0.5)
            drifted += int((drift > 0).sum())
        assert drifted > 0  # bfloat16 does round: the bound is not vacuous


@pytest.mark.parametrize("device", devices())
def test_forked_rng_seeds_and_restores_the_generators_of_the_device(device: str) -> None:
    dev = resolve_device(device)
    cpu_state = torch.get_rng_state()
    cuda_state = torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None
    draws = []
    for _ in range(2):
        with forked_rng(dev, 1234):
            draws.append(
                (
                    torch.rand(4),
                    torch.rand(4, device=dev),
                    torch.nn.functional.dropout(torch.ones(64, device=dev), 0.5),
                )
            )
    for a, b in zip(*draws, strict=True):
        assert torch.equal(a, b)  # seeded: dropout inside is reproducible on the device
    assert torch.equal(torch.get_rng_state(), cpu_state)  # and nothing outside moved
    if cuda_state is not None:
        assert torch.equal(torch.cuda.get_rng_state(dev), cuda_state)
    # On the CPU it is exactly the fork the engine used before devices existed.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)
        assert torch.equal(torch.rand(4), draws[0][0])


@pytest.mark.parametrize("device", devices())
def test_checkpoints_land_on_the_runs_device_and_cpu_state_stays_on_the_cpu(device: str) -> None:
    dev = resolve_device(device)
    restore = restore_location(dev)
    storage = torch.UntypedStorage(8)
    # a tensor saved from another machine's GPU (any index) comes back on this run's device
    assert restore(storage, "cuda:3").device == dev
    # a method's CPU bookkeeping (FedKSeed's pool) stays on the CPU
    assert restore(storage, "cpu").device.type == "cpu"


# ---- every method through the engine in bfloat16 -----------------------------------------------------


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_completes_a_bfloat16_run(name: str, device: str, tmp_path: Path, monkeypatch) -> None:
    cls = METHODS.get(name)
    seen: list[set[str]] = []
    aggregate = cls.aggregate

    def recording(self, round_idx, payloads):
        seen.append({v.device.type for pl in payloads for v in pl.values()})
        return aggregate(self, round_idx, payloads)

    monkeypatch.setattr(cls, "aggregate", recording)
    rounds = cls.max_rounds or 2
    data = tiny_run_config(
        name,
        {"lr": 1e-3, **SMALL.get(name, {})},
        federation={"rounds": rounds, "eval_every": 1},
        dtype="bfloat16",
        device=device,
    )
    out = run(RunConfig.from_dict(data), tmp_path / "run", progress=False)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["status"] == "ok", meta.get("reason")
    resolved = str(resolve_device(device))
    assert meta["device"]["requested"] == device and meta["device"]["resolved"] == resolved
    assert meta["device"]["dtype"] == "bfloat16" and meta["device"]["name"]
    rows = read_rows(out)
    assert [r["round"] for r in rows] == list(range(rounds + 1))
    formula = meta["formula_bits"]
    for r in rows:
        assert r["dtype"] == "bfloat16" and r["device"] == resolved
        if device == "cpu":
            assert r["peak_device_mb"] is None
        else:
            assert r["peak_device_mb"] > 0
        assert math.isfinite(r["eval_loss"])
        if r["round"] > 0:
            assert math.isfinite(r["train_loss"])
            # counted bits agree with the method's formula in bfloat16 too (3 clients a round)
            assert (r["bits_up"], r["bits_down"]) == (3 * formula["uplink"], 3 * formula["downlink"])
    # the server received the payloads on the model's device
    assert seen and all(s == {torch.device(resolved).type} for s in seen)


def test_peak_device_memory_is_none_on_the_cpu() -> None:
    assert peak_device_memory_mb(torch.device("cpu")) is None


# ---- tables ----------------------------------------------------------------------------------------


def test_tables_pool_seeds_run_on_other_devices_but_not_other_dtypes(tmp_path: Path) -> None:
    old = make_run(tmp_path, "feedsign", 0, [0.5, 0.6])  # written before the keys existed: cpu, float32
    new = make_run(tmp_path, "feedsign", 1, [0.5, 0.6], config={"device": "cuda:0", "dtype": "float32"})
    assert len(run_tables([old, new])[0]) == 2
    bf16 = make_run(tmp_path, "feedsign", 2, [0.5, 0.6], config={"device": "cuda:0", "dtype": "bfloat16"})
    with pytest.raises(ValueError, match="dtype"):
        run_tables([old, bf16])


def test_rows_written_before_devices_existed_read_as_cpu_float32() -> None:
    # The committed SmolLM2 study's runs were recorded before devices were part of a row.
    committed = sorted(Path(__file__).resolve().parents[2].glob("results/llm/runs/feedsign/*/seed0"))[:1]
    assert committed, "the committed SmolLM2 feedsign runs are the reference"
    assert "device" not in read_rows(committed[0])[0]
    df, _ = load_runs(committed)
    assert set(df["device"]) == {"cpu"} and set(df["dtype"]) == {"float32"}
    assert df["peak_device_mb"].isna().all() and df["peak_device_mb"].dtype == "float64"


# ---- on a GPU ----------------------------------------------------------------------------------------


@pytest.mark.gpu
def test_on_a_gpu_the_fit_check_reads_free_memory_and_the_peak_is_counted() -> None:
    dev = resolve_device("cuda")
    free, total = torch.cuda.mem_get_info(dev)
    with pytest.raises(ZofoError, match="does not fit"):
        check_memory(total // 2 + 1, torch.float32, 1.1, dev)  # 2.2x the whole GPU
    from zofo.core.device import reset_peak_memory

    reset_peak_memory(dev)
    x = torch.empty(64 * 2**20, dtype=torch.uint8, device=dev)
    assert peak_device_memory_mb(dev) >= 64
    del x


def test_the_example_config_documents_device_and_dtype() -> None:
    path = Path(__file__).resolve().parents[2] / "config" / "run-example.yaml"
    lines = {line.split(":")[0]: line for line in path.read_text().splitlines() if not line.startswith(" ")}
    assert "#" in lines["device"] and "#" in lines["dtype"]
    cfg = RunConfig.from_yaml(path)
    assert (cfg.device, cfg.dtype) == ("auto", "float32")


def test_glibc_accepts_the_allocator_settings_on_linux() -> None:
    """mallopt returns 1 only for a parameter and value it takes: a wrong constant or a value out of
    glibc's range would return 0 and leave the defaults."""
    import sys

    from zofo.core.device import keep_freed_host_memory

    assert keep_freed_host_memory() is sys.platform.startswith("linux")
