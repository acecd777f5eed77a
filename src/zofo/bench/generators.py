"""The generator section: normals per second of the portable generator (``zofo.philox``) and of torch's
own generator on the same device, and the bytes they write per second against a device-to-device copy.

Rows, per device and dtype (``items`` normals per call, each call into the same buffer, which is far
larger than any cache):

- ``copy``: ``dst.copy_(src)``; ``gb_s`` counts the bytes read plus the bytes written, the memory
  roofline a generator that only writes can hope to reach.
- ``gen_torch``: ``out.normal_(generator=g)`` with a ``torch.Generator`` on the device (mt19937 on the
  CPU, cuRAND's Philox on CUDA); ``gb_s`` counts the bytes written; ratio to ``copy``.
- ``gen_philox``: ``zofo.philox.normal_``; ratio to ``copy`` and to ``gen_torch`` (both write the same
  bytes, so the second is the ratio of normals per second: above 1, the portable generator is faster).

The CPU rows are always measured (at the bench's threads), the device's too when it is a GPU.
"""

from __future__ import annotations

import torch

from zofo.bench.common import Rows, dtype_name, join, log, median_time
from zofo.rng import derive

GB = 1e9


def _numel(rows: Rows, device: torch.device) -> int:
    opts = rows.opts
    if opts.gen_numel is not None:
        return opts.gen_numel
    return 1 << 28 if device.type == "cuda" else 1 << 24


def generator_rows(rows: Rows, device: torch.device, dtype: torch.dtype) -> dict[str, float]:
    """The three measures on one device and dtype; returns normals per second by generator."""
    from zofo import philox

    opts = rows.opts
    n = _numel(rows, device)
    size = n * torch.empty((), dtype=dtype).element_size()
    seed = derive(opts.seed, "bench", "generators") & 0xFFFFFFFF
    g = torch.Generator(device=device).manual_seed(seed)
    out = torch.empty(n, dtype=dtype, device=device)
    src = torch.empty(n, dtype=dtype, device=device).normal_(generator=g)  # never time on zeros
    dev, dt = str(device), dtype_name(dtype)
    common = {"items": n, "device": dev, "dtype": dt}

    t_copy, calls = median_time(lambda i: out.copy_(src), opts.repeats, device=device)
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

    t_torch, calls = median_time(lambda i: out.normal_(generator=g), opts.repeats, device=device)
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
        lambda i: philox.normal_(out, seed, 1 + i % 1000), opts.repeats, device=device
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
        note=join("zofo.philox.normal_; bytes written", f"kernel: {_kernel(device)}"),
        **common,
    )
    log(
        f"generators on {dev} {dt}: torch {n / t_torch:.3g}/s, philox {n / t_philox:.3g}/s, "
        f"copy {copy_gb_s:.3g} GB/s"
    )
    return {"torch": n / t_torch, "philox": n / t_philox}


def _kernel(device: torch.device) -> str:
    from zofo import philox

    describe = getattr(philox, "kernel", None)
    text = describe() if callable(describe) else ""
    if device.type == "cuda":
        return "torch ops (torch.compile on CUDA)"
    return str(text)


def run_generators(rows: Rows) -> dict[tuple[str, str], float]:
    """Every (device, dtype) the run needs; returns normals per second by (device type, generator) for
    the sizes section's time estimates (at the sizes' dtype where measured)."""
    opts = rows.opts
    dtypes = [torch.float32, *([opts.torch_dtype] if opts.torch_dtype != torch.float32 else [])]
    devices = [torch.device("cpu"), *([torch.device(opts.device)] if opts.on_cuda else [])]
    rates: dict[tuple[str, str], float] = {}
    for device in devices:
        for dtype in dtypes:
            for gen, rate in generator_rows(rows, device, dtype).items():
                rates[(device.type, gen)] = rate  # the last dtype, the sizes' own, wins
    return rates
