"""The generator section: normals per second of the portable generator (``zofo.core.philox``) and of torch's
own generator on the same device, and the bytes they write per second against a device-to-device copy.

Rows, per device and dtype (``items`` normals per call, each call into the same buffer, which is far
larger than any cache):

- ``copy``: ``dst.copy_(src)``; ``gb_s`` counts the bytes read plus the bytes written, the memory
  roofline a generator that only writes can hope to reach.
- ``gen_torch``: ``out.normal_(generator=g)`` with a ``torch.Generator`` on the device (mt19937 on the
  CPU, cuRAND's Philox on CUDA); ``gb_s`` counts the bytes written; ratio to ``copy``.
- ``gen_philox``: ``zofo.core.philox.normal_``; ratio to ``copy`` and to ``gen_torch`` (both write the same
  bytes, so the second is the ratio of normals per second: above 1, the portable generator is faster).
- ``gen_philox_torch_ops``: the same numbers from zofo.core.philox's plain torch ops, eager (what a CPU
  without the compiled kernel, or a GPU without torch.compile, runs); ratio of normals per second to
  ``gen_philox``.

The CPU rows are always measured (at the bench's threads), the device's too when it is a GPU.
"""

from __future__ import annotations

import torch

from zofo.bench.common import Rows, dtype_name, join, log, median_time
from zofo.core.seeds import derive

GB = 1e9


def _numel(rows: Rows, device: torch.device) -> int:
    opts = rows.opts
    if opts.gen_numel is not None:
        return opts.gen_numel
    return 1 << 28 if device.type == "cuda" else 1 << 24


def generator_rows(rows: Rows, device: torch.device, dtype: torch.dtype) -> dict[str, float]:
    """The three measures on one device and dtype; returns normals per second by generator."""
    from zofo.core import philox

    opts = rows.opts
    n = _numel(rows, device)
    size = n * torch.empty((), dtype=dtype).element_size()
    seed = derive(opts.seed, "bench", "generators") & 0xFFFFFFFF
    g = torch.Generator(device=device).manual_seed(seed)
    out = torch.empty(n, dtype=dtype, device=device)
    src = torch.empty(n, dtype=dtype, device=device).normal_(generator=g)  # never time on zeros
    dev, dt = str(device), dtype_name(dtype)
    common = {"items": n, "device": dev, "dtype": dt}

    budget = opts.max_seconds
    t_copy, calls = median_time(lambda i: out.copy_(src), opts.repeats, device=device, budget=budget)
    copy_gb_s = 2 * size / t_copy / GB
    rows.add(
        "-",
        0,
        "-",
        "copy",
        seconds=t_copy,
        gb_s=copy_gb_s,
        repeats=calls,
        note="device-to-device copy: bytes read + written",
        **common,
    )

    t_torch, calls = median_time(
        lambda i: out.normal_(generator=g), opts.repeats, device=device, budget=budget
    )
    torch_gb_s = size / t_torch / GB
    kind = "mt19937" if device.type == "cpu" else "Philox (cuRAND)"
    rows.add(
        "-",
        0,
        "-",
        "gen_torch",
        seconds=t_torch,
        gb_s=torch_gb_s,
        value=torch_gb_s,
        of={"copy": copy_gb_s},
        repeats=calls,
        note=f"torch.Generator({device.type}) {kind} normal_; bytes written",
        **common,
    )

    # A new stream per call: nothing is reused between calls, as a new seed's z is not.
    t_philox, calls = median_time(
        lambda i: philox.normal_(out, seed, 1 + i % 1000), opts.repeats, device=device, budget=budget
    )
    philox_gb_s = size / t_philox / GB
    rows.add(
        "-",
        0,
        "-",
        "gen_philox",
        seconds=t_philox,
        gb_s=philox_gb_s,
        value=philox_gb_s,
        of={"copy": copy_gb_s, "gen_torch": torch_gb_s},
        repeats=calls,
        note=join("zofo.core.philox.normal_; bytes written", f"kernel: {_kernel(device)}"),
        **common,
    )
    # The same numbers from plain torch ops, eager: what a CPU without the compiled kernel runs, and a
    # GPU without torch.compile. bf16 targets go through float32 in both paths.
    target = out if dtype in (torch.float32, torch.float64) else torch.empty(n, device=device)
    t_eager, calls = median_time(
        lambda i: torch_ops_normal_(target, seed, 1 + i % 1000), opts.repeats, device=device, budget=budget
    )
    eager_gb_s = target.numel() * target.element_size() / t_eager / GB
    rows.add(
        "-",
        0,
        "-",
        "gen_philox_torch_ops",
        seconds=t_eager,
        gb_s=eager_gb_s,
        value=n / t_eager,
        of={"gen_philox": n / t_philox},
        repeats=calls,
        note=join(
            "zofo.core.philox's torch ops, eager (no C kernel, no torch.compile); bytes written",
            "" if target is out else "into float32 (the bf16/fp16 path's first step)",
        ),
        **{**common, "dtype": dtype_name(target.dtype)},
    )
    log(
        f"generators on {dev} {dt}: torch {n / t_torch:.3g}/s, philox {n / t_philox:.3g}/s, "
        f"philox torch ops {n / t_eager:.3g}/s, "
        f"copy {copy_gb_s:.3g} GB/s"
    )
    return {"torch": n / t_torch, "philox": n / t_philox}


def torch_ops_normal_(out: torch.Tensor, seed: int, stream: int) -> torch.Tensor:
    """zofo.core.philox's normals from its torch ops, eager, whatever the device (the module picks the C
    kernel on the CPU and the compiled ops on CUDA; this reaches past both to time the plain path)."""
    from zofo.core import philox

    return philox.torch_normal_(out, seed, stream, fuse=False)


def _kernel(device: torch.device) -> str:
    from zofo.core import philox

    return "torch ops fused by torch.compile" if device.type == "cuda" else philox.kernel()


def run_generators(rows: Rows) -> dict[tuple[str, str], float]:
    """Every (device, dtype) the run needs; returns normals per second by (device type, generator) for
    the sizes section's time estimates (at the sizes' dtype where measured)."""
    opts = rows.opts
    rates: dict[tuple[str, str], float] = {}
    # The CPU in float32 always (what zo.generator: torch draws for any device, and the portable
    # generator's CPU kernel); the sizes' device in float32 and in the sizes' dtype.
    runs = [(torch.device("cpu"), torch.float32)]
    if opts.on_cuda:
        runs += [(torch.device(opts.device), dt) for dt in dict.fromkeys([torch.float32, opts.torch_dtype])]
    elif opts.torch_dtype != torch.float32:
        runs.append((torch.device("cpu"), opts.torch_dtype))
    for device, dtype in runs:
        for gen, rate in generator_rows(rows, device, dtype).items():
            rates[(device.type, gen)] = rate  # the last dtype, the sizes' own, wins
    return rates
