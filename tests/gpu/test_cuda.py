"""On a CUDA device: the portable generator is bitwise the CPU's, a ZO step lands on the CPU's weights
(to rounding), every method completes a bf16 round, and the bench's device path writes its rows.

Marked ``gpu`` (deselected by default); run with ``pytest -m gpu tests/gpu`` on a machine with CUDA.
The scripted check on a lent machine is tests/gpu/check.sh. No timing is asserted.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import SMALL, load_tiny_llama, read_rows, tiny_run_config

from zofo.core import philox
from zofo.core.registry import METHODS
from zofo.core.zo import SeededDirections, trainable_parameters

pytestmark = pytest.mark.gpu

# (numel, seed, stream, start): odd lengths, one past the 159,744 elements where stock CUDA randn
# diverges between GPU models, a 64-bit seed, the last stream, and starts that are not multiples of 4
# (a Philox block holds four words).
CASES = [
    (1, 0, 0, 0),
    (7, 3, 5, 1),
    (1023, 2**40 + 17, 1, 6),
    (65_536, 11, 2, 0),
    (159_745, 5, 3, 3),
    (160_001, 2**63 - 1, 2**32 - 1, 159_744),
    (1_000_003, 9, 104, 2**33 + 2),
]


@pytest.fixture(scope="module")
def cuda() -> torch.device:
    assert torch.cuda.is_available(), "tests/gpu needs a CUDA device (they are deselected without -m gpu)"
    return torch.device("cuda", torch.cuda.current_device())


@pytest.mark.parametrize(("n", "seed", "stream", "start"), CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_philox_normals_on_cuda_are_the_cpus_bit_for_bit(cuda, n, seed, stream, start, dtype):
    on_cpu = philox.normal_(torch.empty(n, dtype=dtype), seed, stream, start)
    on_gpu = philox.normal_(torch.full((n,), math.nan, dtype=dtype, device=cuda), seed, stream, start)
    assert torch.equal(on_gpu.cpu(), on_cpu)


@pytest.mark.parametrize(("n", "seed", "stream", "start"), CASES)
def test_philox_raw_words_on_cuda_are_the_cpus(cuda, n, seed, stream, start):
    on_gpu = philox.raw_words(seed, stream, start, n, cuda)
    assert torch.equal(on_gpu.cpu(), philox.raw_words(seed, stream, start, n))


def test_compiled_philox_is_the_eager_ops_and_really_compiled(cuda):
    out = torch.full((300_007,), math.nan, device=cuda)
    # fuse=True raises if compiling fails, so this compares the compiled kernel with the eager ops.
    compiled = philox.torch_normal_(out, 7, 2, 5, fuse=True).clone()
    eager = philox.torch_normal_(torch.full_like(out, math.nan), 7, 2, 5, fuse=False)
    assert torch.equal(compiled, eager)
    # and what the ZO step uses on CUDA by default is the same
    assert torch.equal(philox.normal_(torch.full_like(out, math.nan), 7, 2, 5), eager)


def test_zo_directions_on_cuda_are_the_cpus(cuda):
    model = load_tiny_llama().model
    cpu_params = trainable_parameters(model)
    gpu_params = [p.detach().to(cuda) for p in cpu_params]
    for mode in ("lean", "fast"):
        on_cpu = list(SeededDirections(cpu_params, 1e-3, mode, generator="philox").z(123))
        on_gpu = list(SeededDirections(gpu_params, 1e-3, mode, generator="philox").z(123))
        assert all(torch.equal(g.cpu(), c) for g, c in zip(on_gpu, on_cpu, strict=True))


def _zo_steps(device: torch.device, gs: list[float] | None = None) -> tuple[list[torch.Tensor], list[float]]:
    """Three fused ZO-SGD steps (philox, fast mode) on tiny-llama in fp32 on ``device``; with ``gs``
    the update uses those projected gradients instead of the ones this device computed."""
    ids = torch.tensor([[101, 2023, 2003, 1037, 3231, 1997, 1996, 3698, 102]], device=device)
    model = load_tiny_llama().model.to(device).eval()
    params = trainable_parameters(model)
    dirs = SeededDirections(params, 1e-3, "fast", generator="philox")
    seen = []
    with torch.no_grad():
        for step in range(3):
            g = dirs.estimate(1000 + step, lambda: model(input_ids=ids, labels=ids).loss, hold=True)
            seen.append(g)
            dirs.update(1000 + step, 1e-2 * (g if gs is None else gs[step]))
    return [p.detach().cpu() for p in params], seen


def test_zo_steps_on_cuda_land_on_the_cpus_weights(cuda):
    """z is bitwise the same on both devices. Given the same projected gradients, the weights agree to
    the rounding of the perturb/restore/update arithmetic (fused multiply-adds on the GPU: an ulp or two
    of |w| per pass, far below 1e-6, while the steps move weights by ~1e-2). With each device's own
    losses, g differs by the losses' rounding (~1e-6 / eps), so the weights agree to a small fraction
    of how far the steps moved them, not to an ulp."""
    w0 = [p.detach().clone() for p in trainable_parameters(load_tiny_llama().model)]
    on_cpu, g_cpu = _zo_steps(torch.device("cpu"))
    replayed, _ = _zo_steps(cuda, gs=g_cpu)
    on_gpu, g_gpu = _zo_steps(cuda)
    moved = max(float((a - b).abs().max()) for a, b in zip(on_cpu, w0, strict=True))
    assert moved > 1e-3
    for c, r in zip(on_cpu, replayed, strict=True):
        torch.testing.assert_close(r, c, rtol=0.0, atol=1e-6)
    assert g_gpu == pytest.approx(g_cpu, rel=1e-2, abs=1e-2)
    apart = max(float((c - g).abs().max()) for c, g in zip(on_cpu, on_gpu, strict=True))
    assert apart < 0.05 * moved


@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_completes_a_bf16_round_on_cuda_with_the_portable_generator(cuda, method, tmp_path):
    """One round of every method on tiny-llama in bfloat16 on the GPU, z from zofo.core.philox (the engine's
    own device tests run with torch's generator); the peak device memory is in every row."""
    from zofo.core.config import RunConfig
    from zofo.engine.loop import run

    data = tiny_run_config(
        method,
        SMALL.get(method, {}),
        federation={"rounds": 1, "eval_every": 1},
        device=str(cuda),
        dtype="bfloat16",
        zo={"generator": "philox"},
    )
    out = run(RunConfig.from_dict(data), tmp_path / method, progress=False)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["status"] == "ok", meta.get("reason")
    assert meta["zo_generator"]["name"] == "philox"
    rows = read_rows(out)
    assert [r["round"] for r in rows] == [0, 1]
    assert math.isfinite(rows[-1]["metric"]) and math.isfinite(rows[-1]["eval_loss"])
    total_mb = torch.cuda.get_device_properties(cuda).total_memory / 2**20
    assert all(0 < r["peak_device_mb"] < total_mb for r in rows)
    print(f"{method}: peak device memory {rows[-1]['peak_device_mb']:.1f} MiB")


def test_bench_device_path_writes_its_rows(cuda, tmp_path):
    from zofo.cli import main

    code = main(
        [
            "bench",
            "--quick",
            "--device",
            str(cuda),
            "--memory",
            "--out",
            str(tmp_path),
            "--figures",
            str(tmp_path),
        ]
    )
    assert code == 0
    import pandas as pd

    rows = pd.read_csv(tmp_path / "bench.csv")
    gpu = rows[rows["device"] == str(cuda)]
    assert {"copy", "gen_torch", "gen_philox", "forward_pair", "zo_step_fast_philox"} <= set(gpu["measure"])
    peaks = gpu[gpu["measure"].str.startswith("peak_device_")]
    kinds = ("inference", "zo_lean", "zo_fast", "fo_adamw")
    assert set(peaks["measure"]) == {f"peak_device_{k}" for k in kinds}
    assert (peaks["device_mb"] > 0).all()
    assert torch.cuda.get_device_name(cuda) in (tmp_path / "bench.md").read_text()
