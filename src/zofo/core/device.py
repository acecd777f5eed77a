"""Where a run computes and in which precision: the device and dtype keys, resolved once per run.

``device`` names where the model, its batches and the decoded payloads live ("auto" picks cuda, then
mps, then cpu); ``dtype`` the precision of the weights. Losses are computed in float32 whatever the
dtype (the objectives upcast scores and logits before the cross-entropy).

Before a model is loaded, ``check_memory`` compares what the run needs (parameters x bytes per element
x a method's factor, ``FederatedMethod.memory_factor``) with what the device has free, so a run that
cannot fit is refused before it starts instead of failing with an out-of-memory error hours in.
"""

from __future__ import annotations

import contextlib
import math
import platform
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from zofo.core.config import DEVICE_ALLOWED, check_device_name
from zofo.core.errors import ConfigError, ZofoError

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
# Device memory per byte of the model's weights, by method family, before a method's own additions
# (``FederatedMethod.memory_factor``). ZO runs at inference level: the weights plus a 10% margin for
# activations. FO keeps the weights, their gradients and AdamW's two moments, all in the weights' dtype.
MEMORY_FACTORS: dict[str, float] = {"zo": 1.1, "fo": 4.0}


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def available_devices() -> list[str]:
    """The devices this machine offers, for error messages: cpu, every cuda:N, mps."""
    out = ["cpu"]
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        out.append("mps")
    return out


def resolve_device(name: str) -> torch.device:
    """The torch device for a ``device`` value: "auto" is cuda if available, else mps, else cpu; "cuda"
    is the current CUDA device, with its index (so rows say "cuda:0", not "cuda"). A device this machine
    lacks is a ConfigError naming what it has."""
    check_device_name(name)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    have = f"this machine has {available_devices()}"
    if name == "mps":
        if not _mps_available():
            raise ConfigError("device", name, f"{DEVICE_ALLOWED}; {have}")
        return torch.device("mps")
    if not torch.cuda.is_available():
        raise ConfigError("device", name, f"{DEVICE_ALLOWED}; {have}")
    device = torch.device(name)
    index = torch.cuda.current_device() if device.index is None else device.index
    if index >= torch.cuda.device_count():
        raise ConfigError("device", name, f"{DEVICE_ALLOWED}; {have}")
    return torch.device("cuda", index)


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype for a ``dtype`` value."""
    if name not in DTYPES:
        raise ConfigError("dtype", name, f"one of {list(DTYPES)}")
    return DTYPES[name]


def device_name(device: torch.device) -> str:
    """A human name for the hardware, for meta.json: the GPU's model, or the CPU's."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return f"Apple MPS ({platform.machine()})"
    try:  # Linux names the CPU model here; platform.processor() often says only "x86_64"
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def reset_peak_memory(device: torch.device) -> None:
    """Start the peak-memory count of ``device`` afresh (a run reports its own peak, not the process's)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_device_memory_mb(device: torch.device) -> float | None:
    """Peak memory allocated by torch on ``device`` since the last reset, in MB (2^20 bytes); on MPS,
    which keeps no peak, the memory the driver holds now; None on the CPU (see peak_rss_mb there)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    if device.type == "mps":
        return torch.mps.driver_allocated_memory() / 2**20
    return None


def free_memory_bytes(device: torch.device) -> int | None:
    """Memory a run can still take on ``device``: free CUDA memory, MPS's recommended budget minus what
    its driver holds, available host memory on the CPU; None where it cannot be read."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type == "mps":
        budget = getattr(torch.mps, "recommended_max_memory", None)
        return None if budget is None else int(budget() - torch.mps.driver_allocated_memory())
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except (ImportError, OSError):
        return None


def required_memory_bytes(parameters: int, dtype: torch.dtype, factor: float) -> int:
    """What a run of a model with ``parameters`` weights of ``dtype`` needs: parameters x bytes per
    element x ``factor`` (the method's multiple of its weights, ``FederatedMethod.memory_factor``)."""
    return math.ceil(parameters * torch.empty((), dtype=dtype).element_size() * factor)


def check_memory(
    parameters: int,
    dtype: torch.dtype,
    factor: float,
    device: torch.device,
    free_bytes: int | None = None,
) -> int:
    """Refuse a run that cannot fit ``device``; returns the bytes it needs.

    ``free_bytes`` is what the device has free (read from the device when None). On an accelerator a
    shortfall is a ZofoError naming both numbers; on the CPU it is only a warning on stderr, since the
    operating system can swap and the host's available memory is a moving target."""
    needed = required_memory_bytes(parameters, dtype, factor)
    free = free_memory_bytes(device) if free_bytes is None else free_bytes
    if free is None or needed <= free:
        return needed
    what = (
        f"needs about {needed / 2**30:.2f} GiB ({parameters:,} parameters x "
        f"{torch.empty((), dtype=dtype).element_size()} bytes ({str(dtype).removeprefix('torch.')}) x "
        f"{factor:g}) and {device} has {free / 2**30:.2f} GiB free"
    )
    if device.type == "cpu":
        print(f"zofo: warning: this run {what}; it may swap or be killed", file=sys.stderr, flush=True)
        return needed
    raise ZofoError(
        f"the model does not fit: this run {what}; choose a smaller model (model.layers), a narrower "
        "dtype, a lean zo.mode, or another device"
    )


def fork_devices(device: torch.device) -> tuple[list, str | None]:
    """(devices, device_type) for ``torch.random.fork_rng``: the generator of the device in use
    besides the CPU's, which fork_rng always saves."""
    if device.type == "cuda":
        return [device.index if device.index is not None else torch.cuda.current_device()], "cuda"
    if device.type == "mps":
        return [device], "mps"
    return [], None


@contextlib.contextmanager
def forked_rng(device: torch.device, seed: int) -> Iterator[None]:
    """Run the block with torch's global generators of the CPU and of ``device`` seeded with ``seed``,
    and put their states back afterwards: dropout draws inside are reproducible, on a GPU too, and
    invisible to everything else. Only the generators of the device in use are seeded, so the states
    of other GPUs are never touched."""
    devices, device_type = fork_devices(device)
    with torch.random.fork_rng(devices=devices, device_type=device_type):
        torch.default_generator.manual_seed(seed)  # the CPU half of torch.manual_seed
        if device.type == "cuda":
            torch.cuda.default_generators[devices[0]].manual_seed(seed)
        elif device.type == "mps":
            torch.mps.manual_seed(seed)
        yield


def restore_location(device: torch.device) -> Callable[[torch.UntypedStorage, str], torch.UntypedStorage]:
    """A ``map_location`` for ``torch.load``: what was saved from an accelerator lands on ``device``
    (whatever index or machine saved it), and what was saved on the CPU stays there (a method's
    bookkeeping, such as FedKSeed's seed pool, lives on the CPU whatever the device)."""
    target = str(device)

    def restore(storage: torch.UntypedStorage, location: str) -> torch.UntypedStorage:
        return torch.serialization.default_restore_location(storage, "cpu" if location == "cpu" else target)

    return restore


# glibc mallopt parameters (malloc.h): freed heap above the trim threshold goes back to the OS, and
# allocations above the mmap threshold (at most _MMAP_MAX of them at once) get pages of their own.
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def keep_freed_host_memory() -> bool:
    """Ask glibc to serve every allocation from a heap it keeps, instead of mapping large blocks and
    giving freed memory back to the OS at once.

    A training step allocates the same buffers at every step (activations, a flattened update, an
    optimiser's state); glibc's defaults map each block over a few MB afresh and unmap it when freed, so
    every step faults its pages in again. Measured on MiniLM-L6's first block: the batched forward of
    40 sequences spent 0.34 s of system time per 2.6 s of computation, and a FedAvg run 7.2 s of system
    time in 21.5 s, against 1.7 s in 14.7 s with large blocks kept. Numbers do not change (only where
    buffers live); the process keeps its peak heap until it exits. True if applied (glibc on Linux),
    False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        no_maps = libc.mallopt(_M_MMAP_MAX, 0) == 1
        return bool(libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30) == 1 and no_maps)
    except (OSError, AttributeError):  # another C library (musl) or none: keep its defaults
        return False
