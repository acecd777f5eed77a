"""What every section of the bench shares: the CSV rows, the timers and device memory readings."""

from __future__ import annotations

import math
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd
import torch

from zofo.bench.options import BenchOptions

# The parts a throughput run's training time is split into (zofo.bench.pipeline.split_profile).
SHARES: tuple[str, ...] = ("forward", "draw", "moves", "other")
CSV_COLUMNS: tuple[str, ...] = (
    "model",
    "params",
    "shape",
    "clients",
    "measure",
    "device",
    "dtype",
    "seconds",
    "rss_mb",
    "device_mb",
    "items",
    "gb_s",
    "ratio",
    "ratio_of",
    "threads",
    "repeats",
    # Sections startup, dag, throughput (zofo.bench.pipeline): the code tree timed ("current" or
    # "baseline"), the model size (model.layers, "all" for every block), and the shares of a throughput
    # run's profiled training time.
    "tree",
    "layers",
    *(f"share_{part}" for part in SHARES),
    "note",
)
RANDOM_NOTE = "random-init weights (timing only)"
MIB = float(1 << 20)


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


class Rows:
    """The CSV rows: one per measurement, one more per extra ratio of the same measurement."""

    def __init__(self, opts: BenchOptions):
        self.opts = opts
        self.rows: list[dict[str, Any]] = []

    def add(
        self,
        bm_name: str,
        params: int,
        shape: str,
        measure: str,
        *,
        seconds: float = math.nan,
        rss_mb: float = math.nan,
        device_mb: float = math.nan,
        items: float = math.nan,
        gb_s: float = math.nan,
        value: float | None = None,
        of: Mapping[str, float] | None = None,
        clients: int | None = None,
        repeats: int | None = None,
        device: str = "cpu",
        dtype: str = "float32",
        note: str = "",
        tree: str = "",
        layers: str = "",
        shares: Mapping[str, float] | None = None,
        threads: int | None = None,
    ) -> None:
        """One row without a ratio, or one row per entry of ``of`` (ratio_of name -> its value). The
        ratio is ``value`` over the entry; ``value`` defaults to the seconds, else the memory."""
        if value is None:
            value = next((v for v in (seconds, rss_mb, device_mb) if not math.isnan(v)), math.nan)
        base = {
            "model": bm_name,
            "params": params,
            "shape": shape,
            "clients": clients,
            "measure": measure,
            "device": device,
            "dtype": dtype,
            "seconds": seconds,
            "rss_mb": rss_mb,
            "device_mb": device_mb,
            "items": items,
            "gb_s": gb_s,
            "threads": self.opts.threads if threads is None else threads,
            "repeats": self.opts.repeats if repeats is None else repeats,
            "tree": tree,
            "layers": layers,
            **{f"share_{k}": v for k, v in (shares or {}).items()},
            "note": note,
        }
        for ratio_of, ref in (of or {"": math.nan}).items():
            self.rows.append({**base, "ratio": value / ref if ratio_of else math.nan, "ratio_of": ratio_of})

    def frame(self) -> pd.DataFrame:
        df = pd.DataFrame(self.rows, columns=list(CSV_COLUMNS))
        df["clients"] = df["clients"].astype("Int64")
        return df


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def is_cuda(device: torch.device | str) -> bool:
    return torch.device(device).type == "cuda"


def synchronize(device: torch.device | str) -> None:
    if is_cuda(device):
        torch.cuda.synchronize(torch.device(device))


class Timer:
    """Seconds of one call: CUDA events around it on a GPU (the work is asynchronous: the host clock
    would time the launches), the host clock on the CPU."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)

    def __call__(self, fn: Callable[[], object]) -> float:
        if self.device.type == "cuda":
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0


def median_time(
    fn: Callable[[int], object],
    repeats: int,
    warmup: int = 1,
    device: torch.device | str = "cpu",
    budget: float | None = None,
) -> tuple[float, int]:
    """Median seconds of up to ``repeats`` calls fn(i) after ``warmup`` calls fn(-1), fn(-2), ...; i
    makes each call's step seed new. With ``budget``, the timed calls stop once they would take longer
    than that in all (at least one is timed). Returns (median, calls timed)."""
    timer = Timer(device)
    last = math.nan
    for i in range(warmup):
        last = timer(lambda i=i: fn(-1 - i))
    if budget is not None and warmup and last > 0:
        repeats = max(1, min(repeats, int(budget // last)))
    samples = [timer(lambda i=i: fn(i)) for i in range(repeats)]
    return statistics.median(samples), repeats


def peak_device_mb(fn: Callable[[], object], device: torch.device | str) -> float:
    """Peak memory allocated on a CUDA device (MiB) while fn runs, counting what was there before."""
    device = torch.device(device)
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) / MIB


def free_device(device: torch.device | str) -> None:
    """Hand cached blocks back, so the next measure's peak starts from what is alive."""
    import gc

    gc.collect()
    if is_cuda(device):
        torch.cuda.synchronize(torch.device(device))
        torch.cuda.empty_cache()


def device_name(device: torch.device | str) -> str:
    if is_cuda(device):
        return torch.cuda.get_device_name(torch.device(device))
    import platform

    return f"CPU ({platform.machine()})"


def cpu_name() -> str:
    """This machine's processor as the OS names it: what absolute CPU seconds belong to."""
    import platform
    from pathlib import Path

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
