"""The sizes section: OPT-shaped decoders from 125M to 30B parameters on one device.

Weights are initialised from the config (``transformers.OPTConfig``, built on the device itself): right
for timing and memory, meaningless as a language model, and labelled so in every row. Per size:

- ``forward_pair`` (two no-grad forwards), and zofo's ZO step (``SeededDirections`` estimate + update,
  lean and fast, each generator) as ``zo_step_{mode}_{generator}``, against it;
- peak memory of inference, the ZO step (lean, fast; philox) and a first-order AdamW step, against
  inference: on CUDA the peak allocated (``torch.cuda.max_memory_allocated`` after
  ``reset_peak_memory_stats``) in this process, on the CPU the peak RSS of a child process
  (``peak_rss_*``, as section d);
- FedKSeed's server update (``zofo.methods.fedkseed``), incremental against rebuild, in lean mode with
  the portable generator (fast mode would keep one more model-sized z buffer).

The weights are not restored between measures (a restore copy would double the memory of the largest
sizes): the steps move them by lr * g * z with lr = 1e-6, which changes no timing.

Where something cannot fit, it is not tried: weights alone past the device's memory; first-order
AdamW when weights, gradients and the two moments (4 x the weights in the weights' dtype: torch keeps
AdamW's moments in the parameter dtype) pass it; FedKSeed when its copies of the global weights (2 x
incremental, 3 x rebuild) do. An out-of-memory error is recorded as such. Every row notes whether its
peak fits an 80 GB GPU (at most 78 GiB allocated, leaving room for the CUDA context and allocator
slack). A measure estimated (from the generator section's rates) to take longer than --max-seconds
per call is skipped with a note; one that fits is timed fewer times if its calls would pass it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from zofo.bench.common import (
    MIB,
    RANDOM_NOTE,
    Rows,
    dtype_name,
    free_device,
    join,
    log,
    median_time,
    peak_device_mb,
)
from zofo.bench.fed import directions, forward_pair, memory_workload, zo_step
from zofo.bench.models import BenchModel, load_bench_model, make_batch, make_loss, opt_parameters
from zofo.bench.options import format_shape
from zofo.bench.packaged import fedkseed_rows, memory_rows
from zofo.core.seeds import seed32

FIT_GIB = 78.0  # what an 80 GB GPU leaves to tensors
DEVICE_MEMORY_KINDS: tuple[str, ...] = ("inference", "zo_lean", "zo_fast", "fo_adamw")
# z regenerations of one fused ZO-SGD step (zofo.core.zo): lean 3 (+eps, -2 eps, restore + update), fast 1.
REGENERATIONS = {"lean": 3, "fast": 1}


def fits_80gb(mb: float) -> str:
    return "yes" if mb <= FIT_GIB * 1024 else "no"


def _oom_types() -> tuple[type[BaseException], ...]:
    return (torch.cuda.OutOfMemoryError,) if torch.cuda.is_available() else ()


class Sizes:
    """One device's sizes section; ``rates`` are the generator section's normals per second."""

    def __init__(self, rows: Rows, rates: dict[tuple[str, str], float]):
        self.rows = rows
        self.opts = rows.opts
        self.rates = rates
        self.device = torch.device(self.opts.device)
        self.dtype = self.opts.torch_dtype
        self.itemsize = torch.empty((), dtype=self.dtype).element_size()
        self.total_mb = (
            torch.cuda.get_device_properties(self.device).total_memory / MIB
            if self.device.type == "cuda"
            else math.inf
        )

    def add(self, bm_name: str, params: int, shape: str, measure: str, **kw: object) -> None:
        self.rows.add(
            bm_name, params, shape, measure, device=str(self.device), dtype=dtype_name(self.dtype), **kw
        )

    def skip(self, name: str, params: int, shape: str, measure: str, why: str) -> None:
        self.add(name, params, shape, measure, repeats=0, note=join(f"skipped: {why}", RANDOM_NOTE))
        log(f"{name} {shape} {measure}: skipped ({why})")

    def rate(self, generator: str) -> float:
        """Normals per second of one regeneration for weights on this device. zofo's torch generator
        draws on the CPU for every device (so its numbers do not depend on the device), the portable
        one on the device itself."""
        where = "cpu" if generator == "torch" else self.device.type
        return self.rates.get((where, generator), math.nan)

    def run(self) -> None:
        for size in self.opts.run_sizes:
            self.size(size)

    def size(self, size: str) -> None:
        name = f"opt-{size}"
        n = opt_parameters(size)
        weights_mb = n * self.itemsize / MIB
        if weights_mb > 0.95 * self.total_mb:
            self.skip(
                name,
                n,
                "-",
                "forward_pair",
                f"weights alone need {weights_mb / 1024:.1f} GiB, "
                f"this device has {self.total_mb / 1024:.1f} GiB",
            )
            return
        log(f"building {name} ({n / 1e9:.3g}B parameters) on {self.device} in {dtype_name(self.dtype)}")
        try:
            bm = load_bench_model(name, self.opts.seed, self.opts.assets_dir, self.device, self.dtype)
        except _oom_types():
            free_device(self.device)
            self.skip(name, n, "-", "forward_pair", "out of memory building the model")
            return
        for shape in self.opts.shapes:
            self.steps(bm, shape)
        self.memory(bm, self.opts.shapes[-1])
        self.fedkseed(bm)
        del bm
        free_device(self.device)

    def timed(self, fn: Callable[[int], object]) -> tuple[float, int]:
        return median_time(fn, self.opts.repeats, device=self.device, budget=self.opts.max_seconds)

    def steps(self, bm: BenchModel, shape: tuple[int, int]) -> None:
        sh = format_shape(shape)
        loss = make_loss(bm, make_batch(bm, shape, self.opts.seed))
        floor, calls = self.timed(lambda i: forward_pair(loss))
        self.add(
            bm.name,
            bm.n_params,
            sh,
            "forward_pair",
            seconds=floor,
            repeats=calls,
            note=join("2 forwards, no_grad", RANDOM_NOTE),
        )
        for generator in self.opts.generators:
            for mode in ("lean", "fast"):
                measure = f"zo_step_{mode}_{generator}"
                estimate = floor + REGENERATIONS[mode] * bm.n_params / self.rate(generator)
                if estimate > self.opts.max_seconds:
                    self.skip(
                        bm.name,
                        bm.n_params,
                        sh,
                        measure,
                        f"estimated {estimate:.0f} s per step > --max-seconds {self.opts.max_seconds:g}",
                    )
                    continue
                dirs = directions(bm.params, mode, generator)
                try:
                    seconds, calls = self.timed(
                        lambda i, dirs=dirs, tag=measure: zo_step(
                            dirs, seed32(self.opts.seed, "bench", "sizes", tag, i), loss
                        )
                    )
                except _oom_types():
                    dirs.clear()
                    del dirs
                    free_device(self.device)
                    self.skip(bm.name, bm.n_params, sh, measure, "out of memory")
                    continue
                dirs.clear()
                del dirs
                free_device(self.device)
                self.add(
                    bm.name,
                    bm.n_params,
                    sh,
                    measure,
                    seconds=seconds,
                    repeats=calls,
                    of={"forward_pair": floor},
                    note=join(f"{REGENERATIONS[mode]} z regenerations per step", RANDOM_NOTE),
                )
                log(f"{bm.name} {sh}: {measure} {seconds:.4g} s = {seconds / floor:.3g} x the floor")

    def memory(self, bm: BenchModel, shape: tuple[int, int]) -> None:
        if not self.opts.memory:
            return
        if self.device.type != "cuda":
            memory_rows(self.rows, bm, shape, generator="philox", dtype=dtype_name(self.dtype))
            return
        sh = format_shape(shape)
        batch = make_batch(bm, shape, self.opts.seed)
        loss = make_loss(bm, batch)
        weights_mb = bm.n_params * self.itemsize / MIB
        peaks: dict[str, float] = {}
        for kind in DEVICE_MEMORY_KINDS:
            measure = f"peak_device_{kind}"
            if kind == "fo_adamw" and 4 * weights_mb > self.total_mb:
                self.skip(
                    bm.name,
                    bm.n_params,
                    sh,
                    measure,
                    f"weights, gradients and two AdamW moments need {4 * weights_mb / 1024:.0f} GiB "
                    f"> this device's {self.total_mb / 1024:.0f} GiB",
                )
                continue
            try:
                peaks[kind] = peak_device_mb(self._memory_kind(bm, kind, loss), self.device)
            except _oom_types():
                bm.model.zero_grad(set_to_none=True)
                free_device(self.device)
                self.skip(bm.name, bm.n_params, sh, measure, "out of memory")
                continue
            bm.model.zero_grad(set_to_none=True)
            free_device(self.device)
            of = (
                None
                if kind == "inference" or "inference" not in peaks
                else {"peak_device_inference": peaks["inference"]}
            )
            self.add(
                bm.name,
                bm.n_params,
                sh,
                measure,
                device_mb=peaks[kind],
                repeats=1,
                of=of,
                note=join(
                    f"peak allocated, the kind run twice; fits an 80 GB GPU: {fits_80gb(peaks[kind])}",
                    "generator philox" if kind.startswith("zo_") else "",
                    RANDOM_NOTE,
                ),
            )
        log(
            f"{bm.name} {sh}: peak allocated "
            + ", ".join(f"{k} {v / 1024:.2f} GiB" for k, v in peaks.items())
        )

    def _memory_kind(self, bm: BenchModel, kind: str, loss: Callable[[], torch.Tensor]) -> Callable[[], None]:
        """The work of one memory kind, run twice so that state made on first use is alive at once."""
        seed = self.opts.seed

        def run() -> None:
            memory_workload(kind, bm.params, loss, seed, "philox")

        return run

    def fedkseed(self, bm: BenchModel) -> None:
        def skip_both(reason: str) -> None:
            for measure in ("fedkseed_incremental", "fedkseed_rebuild"):
                self.skip(bm.name, bm.n_params, "-", measure, reason)

        weights_mb = bm.n_params * self.itemsize / MIB
        if 3 * weights_mb > 0.9 * self.total_mb:
            skip_both(
                f"the server's rebuild keeps w0 and the global weights: 3 x the weights = "
                f"{3 * weights_mb / 1024:.0f} GiB > 90% of this device's {self.total_mb / 1024:.0f} GiB"
            )
            return
        opts = self.opts
        regenerations = opts.fedkseed_clients * opts.fedkseed_tau * opts.fedkseed_rounds  # a bound
        estimate = regenerations * bm.n_params / self.rate("philox")
        if estimate > opts.max_seconds:
            skip_both(f"estimated up to {estimate:.0f} s per rebuild > --max-seconds {opts.max_seconds:g}")
            return
        try:
            fedkseed_rows(
                self.rows,
                bm,
                None,
                "lean",
                "philox",
                "-",
                str(self.device),
                dtype_name(self.dtype),
                budget=opts.max_seconds,
            )
        except _oom_types():
            free_device(self.device)
            for measure in ("fedkseed_incremental", "fedkseed_rebuild"):
                self.skip(bm.name, bm.n_params, "-", measure, "out of memory")
        free_device(self.device)
