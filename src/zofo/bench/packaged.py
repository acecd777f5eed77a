"""Sections a-f: the packaged models (and random-init Llamas) on the CPU.

a. ``forward_pair``: the two forward passes a two-point ZO step needs (``torch.no_grad``), the floor
   of any ZO step; ``zo_step_lean`` / ``zo_step_fast``: ``SeededDirections.estimate`` + ``update`` in
   either mode with torch's generator, as a ratio to the floor; ``zo_step_{lean,fast}_philox`` the
   same with the portable generator (``zo.generator: philox``), also against the torch step.
b. ``mezo_reference_step``: a MeZO-style step written here (``mezo_reference_step``): the global
   generator reseeded before each of the four passes over the parameters, a fresh ``torch.normal``
   draw per parameter each time; as a ratio to zofo's step (lean and fast) and to the floor.
c. ``feedsign_client_shared`` / ``feedsign_client_fresh``: one round of zofo's FeedSign with N clients
   sharing the step seed, per client. "shared": z generated once per step and used by every client
   (what zofo's fast mode does in simulation: one cached z per seed); "fresh": the cache is cleared
   before each client, so every client regenerates z once, as a client on its own device does.
d. ``peak_rss_*``: peak resident set (``VmHWM``, ``zofo.engine.record.peak_rss_mb``) of a fresh child
   process that loads the model and runs two of: inference forward pairs, ZO steps (lean, fast),
   first-order AdamW steps (forward + backward + step); as a ratio to inference. Each child includes
   the interpreter, torch and the loaded model, the same in every kind.
e. ``fedkseed_incremental`` / ``fedkseed_rebuild``: zofo's FedKSeed server (``aggregate``) at K seeds,
   applying only the last round's pool change vs rebuilding w0 - lr * sum_j A[j] z(C_j) from the
   whole pool.
f. ``growth_*``: the floor and the fast ZO step on random-init Llamas of growing width;
   ``scaling_feedsign_*``: FeedSign's per-client cost against the number of clients.

Every call uses a new step seed, so fast mode never finds a previous call's z in its cache. The
model's weights are restored after each measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from zofo.bench.common import RANDOM_NOTE, Rows, join, log, median_time
from zofo.bench.fed import (
    FedKSeedServer,
    FeedSignRounds,
    directions,
    fedkseed_history,
    forward_pair,
    memory_workload,
    mezo_reference_step,
    zo_step,
)
from zofo.bench.models import BenchModel, load_bench_model, make_batch, make_loss, restore
from zofo.bench.options import DTYPES, GENERATORS, BenchOptions, format_shape, parse_shapes
from zofo.core.config import ZOConfig
from zofo.core.errors import ConfigError
from zofo.core.seeds import seed32
from zofo.core.zo import SeededDirections
from zofo.engine.record import peak_rss_mb

MEMORY_KINDS: tuple[str, ...] = ("inference", "zo_lean", "zo_fast", "fo_adamw")
CHILD_TIMEOUT_S = 3600


def _random_note(bm: BenchModel) -> str:
    return RANDOM_NOTE if bm.random_init else ""


def timed_regenerations(
    counter: Callable[[], int], fn: Callable[[int], object], repeats: int, **kw: object
) -> tuple[float, int]:
    """``median_time`` of fn, and the z regenerations per call counted over the same calls (warm-up
    included), so counting costs no extra step."""
    before = counter()
    seconds, timed = median_time(fn, repeats, **kw)
    return seconds, (counter() - before) // (timed + 1)


def bench_feedsign(
    rows: Rows,
    bm: BenchModel,
    shape: tuple[int, int],
    n_clients: int,
    floor: float,
    measure_prefix: str,
) -> None:
    """FeedSign per-client step cost with N clients sharing a step seed, shared vs fresh z (c, f)."""
    opts = rows.opts
    batches = [make_batch(bm, shape, opts.seed, index=1 + k) for k in range(n_clients)]
    of: dict[str, float] = {"forward_pair": floor}
    for tag in ("shared", "fresh"):
        rounds = FeedSignRounds(bm, batches, seed32(opts.seed, "bench", "feedsign", tag, n_clients))
        seconds, regen = timed_regenerations(
            lambda rounds=rounds: rounds.dirs.regenerations,
            lambda i, rounds=rounds, tag=tag: rounds.step(i, fresh=tag == "fresh"),
            opts.repeats,
        )
        seconds /= n_clients
        rows.add(
            bm.name,
            bm.n_params,
            format_shape(shape),
            f"{measure_prefix}_{tag}",
            seconds=seconds,
            clients=n_clients,
            of=of,
            note=join(f"per client-step; z regenerations per step: {regen}", _random_note(bm)),
        )
        # fresh is also reported against shared: the cost of regenerating per client
        of = {**of, f"{measure_prefix}_shared": seconds}
        rounds.dirs.clear()


def bench_zo_steps(
    rows: Rows,
    bm: BenchModel,
    shape: tuple[int, int],
    loss: Callable[[], torch.Tensor],
    floor: float,
    w0: Sequence[torch.Tensor] | None,
) -> dict[str, float]:
    """zofo's ZO step, lean and fast, with each generator (torch's rows keep their plain names)."""
    opts = rows.opts
    sh = format_shape(shape)
    steps: dict[str, float] = {}
    for generator in ("torch", *(g for g in opts.generators if g != "torch")):
        for mode in ("lean", "fast"):
            dirs = directions(bm.params, mode, generator)
            suffix = "" if generator == "torch" else f"_{generator}"

            def step(i: int, dirs: SeededDirections = dirs, tag: str = mode + suffix) -> None:
                zo_step(dirs, seed32(opts.seed, "bench", "zo", tag, i), loss)

            seconds, regen = timed_regenerations(lambda dirs=dirs: dirs.regenerations, step, opts.repeats)
            dirs.clear()
            if w0 is not None:
                restore(bm.params, w0)
            of = {"forward_pair": floor}
            if suffix:
                of[f"zo_step_{mode}"] = steps[mode]
            steps[mode + suffix] = seconds
            rows.add(
                bm.name,
                bm.n_params,
                sh,
                f"zo_step_{mode}{suffix}",
                seconds=seconds,
                of=of,
                note=join(f"z regenerations per step: {regen}; generator {generator}", _random_note(bm)),
            )
    return steps


def bench_shape(
    rows: Rows, bm: BenchModel, shape: tuple[int, int], w0: list[torch.Tensor], scaling: bool
) -> None:
    """Measurements a, b, c (and the FeedSign scaling series of f) of one model at one batch shape."""
    opts = rows.opts
    sh = format_shape(shape)
    loss = make_loss(bm, make_batch(bm, shape, opts.seed))
    rnote = _random_note(bm)

    floor, _ = median_time(lambda i: forward_pair(loss), opts.repeats)
    rows.add(bm.name, bm.n_params, sh, "forward_pair", seconds=floor, note=join("2 forwards, no_grad", rnote))
    steps = bench_zo_steps(rows, bm, shape, loss, floor, w0)
    log(f"{bm.name} {sh}: floor {floor:.4g} s, " + ", ".join(f"ZO {k} {v:.4g} s" for k, v in steps.items()))

    ref, _ = median_time(
        lambda i: mezo_reference_step(bm.params, loss, seed32(opts.seed, "bench", "mezo", i)), opts.repeats
    )
    restore(bm.params, w0)
    rows.add(
        bm.name,
        bm.n_params,
        sh,
        "mezo_reference_step",
        seconds=ref,
        of={"forward_pair": floor, "zo_step_lean": steps["lean"], "zo_step_fast": steps["fast"]},
        note=join("global generator reseeded, 4 regenerations per step", rnote),
    )
    log(f"{bm.name} {sh}: MeZO-style reference {ref:.4g} s")

    bench_feedsign(rows, bm, shape, opts.clients, floor, "feedsign_client")
    restore(bm.params, w0)
    if scaling:
        for n in opts.scaling_clients:
            bench_feedsign(rows, bm, shape, n, floor, "scaling_feedsign")
            restore(bm.params, w0)
    log(f"{bm.name} {sh}: FeedSign done")


def fedkseed_rows(
    rows: Rows,
    bm: BenchModel,
    w0: Sequence[torch.Tensor] | None,
    mode: str,
    generator: str,
    shape: str = "-",
    device: str = "cpu",
    dtype: str = "float32",
    budget: float | None = None,
) -> None:
    """Measurement e: zofo's FedKSeed server update, incremental vs rebuild."""
    opts = rows.opts
    history = fedkseed_history(
        opts.fedkseed_k, opts.fedkseed_clients, opts.fedkseed_tau, opts.fedkseed_rounds, opts.seed
    )
    timed: dict[str, tuple[float, int, int]] = {}
    for update, repeats, warmup in (
        ("incremental", opts.repeats, 1),
        # no warm-up: the incremental update's warm-up ran the same axpy code first
        ("rebuild", opts.fedkseed_repeats, 0),
    ):
        server = FedKSeedServer(
            bm, history, opts.fedkseed_k, opts.fedkseed_tau, opts.seed, update, mode, generator
        )
        before = server.regenerations
        seconds, calls = median_time(
            lambda i, server=server: server.step(opts.fedkseed_rounds + 1 + i),
            repeats,
            warmup=warmup,
            device=device,
            budget=budget,
        )
        timed[update] = (seconds, calls, (server.regenerations - before) // (calls + warmup))
        server.dirs.clear()
        del server
        if w0 is not None:
            restore(bm.params, w0)
    setting = (
        f"K={opts.fedkseed_k}, {opts.fedkseed_clients} clients x {opts.fedkseed_tau} steps, "
        f"{opts.fedkseed_rounds} rounds, zo.mode={mode}, generator {generator}"
    )
    rnote = _random_note(bm)
    (inc, inc_calls, n_inc), (reb, reb_calls, n_reb) = timed["incremental"], timed["rebuild"]
    common = {"clients": opts.fedkseed_clients, "device": device, "dtype": dtype}
    rows.add(
        bm.name,
        bm.n_params,
        shape,
        "fedkseed_incremental",
        seconds=inc,
        repeats=inc_calls,
        note=join(f"{n_inc} regenerations (last round's nonzero changes)", setting, rnote),
        **common,
    )
    rows.add(
        bm.name,
        bm.n_params,
        shape,
        "fedkseed_rebuild",
        seconds=reb,
        repeats=reb_calls,
        of={"fedkseed_incremental": inc},
        note=join(f"{n_reb} regenerations (nonzero pool entries) + reload of w0; no warm-up", setting, rnote),
        **common,
    )
    log(f"{bm.name}: FedKSeed incremental {inc:.4g} s ({n_inc}), rebuild {reb:.4g} s ({n_reb})")


def bench_growth(rows: Rows) -> None:
    """Measurement f (first half): floor and fast ZO step on random-init Llamas of growing width."""
    opts = rows.opts
    shape = opts.shapes[0]
    for hidden in opts.growth_hidden:
        bm = load_bench_model(f"rand-llama-h{hidden}", opts.seed, opts.assets_dir)
        loss = make_loss(bm, make_batch(bm, shape, opts.seed))
        floor, _ = median_time(lambda i, loss=loss: forward_pair(loss), opts.repeats)
        dirs = directions(bm.params, "fast", "torch")
        step, _ = median_time(
            lambda i, dirs=dirs, loss=loss: zo_step(dirs, seed32(opts.seed, "bench", "growth", i), loss),
            opts.repeats,
        )
        note = RANDOM_NOTE
        rows.add(bm.name, bm.n_params, format_shape(shape), "growth_forward_pair", seconds=floor, note=note)
        rows.add(
            bm.name,
            bm.n_params,
            format_shape(shape),
            "growth_zo_step_fast",
            seconds=step,
            of={"growth_forward_pair": floor},
            note=note,
        )
        log(f"{bm.name} ({bm.n_params:,} params): floor {floor:.4g} s, fast ZO step {step:.4g} s")
        del bm, dirs


# ----------------------------------------------------------------------------------------------------
# Peak memory in child processes (d)
# ----------------------------------------------------------------------------------------------------


def child_run(
    kind: str,
    model: str,
    shape: tuple[int, int],
    threads: int,
    seed: int,
    assets_dir: str,
    generator: str = "torch",
    dtype: str = "float32",
) -> dict:
    """What one memory child does: load the model, run ``kind`` twice, report its peak RSS. Twice, so
    that state created on first use (AdamW's moments, fast mode's z buffers, where a new seed's z is
    built while the previous one is still cached) is all alive at once, as in a run."""
    if kind not in MEMORY_KINDS:
        raise ConfigError("--child", kind, f"one of {list(MEMORY_KINDS)}")
    torch.set_num_threads(threads)
    bm = load_bench_model(model, seed, assets_dir, "cpu", DTYPES[dtype])
    loss = make_loss(bm, make_batch(bm, shape, seed))
    loaded = peak_rss_mb()  # the part every kind shares: interpreter, torch, transformers, the model
    memory_workload(kind, bm.params, loss, seed, generator)
    return {
        "kind": kind,
        "model": model,
        "params": bm.n_params,
        "generator": generator,
        "dtype": dtype,
        "peak_rss_mb": peak_rss_mb(),
        "loaded_rss_mb": loaded,
    }


def run_child(
    kind: str,
    model: str,
    shape: tuple[int, int],
    opts: BenchOptions,
    generator: str = "torch",
    dtype: str = "float32",
) -> dict:
    """Run one memory child (a fresh interpreter: nothing of this process's peak leaks into it)."""
    import zofo

    env = dict(os.environ)
    # The child imports the same zofo as this process, installed or from a source tree.
    src = str(Path(zofo.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [env.get("PYTHONPATH")])])
    cmd = [
        sys.executable,
        "-m",
        "zofo.bench",
        "--child",
        kind,
        "--model",
        model,
        "--shape",
        format_shape(shape),
        "--threads",
        str(opts.threads),
        "--seed",
        str(opts.seed),
        "--assets-dir",
        str(opts.assets_dir),
        "--generator",
        generator,
        "--dtype",
        dtype,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=CHILD_TIMEOUT_S)
    if proc.returncode != 0:
        raise RuntimeError(f"bench memory child {kind} {model} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def memory_rows(
    rows: Rows, bm: BenchModel, shape: tuple[int, int], generator: str = "torch", dtype: str = "float32"
) -> dict[str, float]:
    """Peak RSS of each memory kind in its own child, against inference; returns the peaks (MB)."""
    opts = rows.opts
    sh = format_shape(shape)
    out = {kind: run_child(kind, bm.name, shape, opts, generator, dtype) for kind in MEMORY_KINDS}
    peaks = {kind: float(o["peak_rss_mb"]) for kind, o in out.items()}
    for kind in MEMORY_KINDS:
        note = join(
            "peak RSS (VmHWM) of a fresh child process (interpreter, torch, model, then the kind run twice); "
            f"peak once the model was loaded: {float(out[kind]['loaded_rss_mb']):.0f} MB",
            f"generator {generator}" if kind.startswith("zo_") else "",
            _random_note(bm),
        )
        rows.add(
            bm.name,
            bm.n_params,
            sh,
            f"peak_rss_{kind}",
            rss_mb=peaks[kind],
            repeats=1,
            dtype=dtype,
            of=None if kind == "inference" else {"peak_rss_inference": peaks["inference"]},
            note=note,
        )
    log(f"{bm.name} {sh}: peak RSS " + ", ".join(f"{k} {v:.0f} MB" for k, v in peaks.items()))
    return peaks


def run_packaged(rows: Rows) -> None:
    """Sections a-f on the CPU, model by model."""
    opts = rows.opts
    for m_idx, name in enumerate(opts.models):
        log(f"loading {name}")
        bm = load_bench_model(name, opts.seed, opts.assets_dir)
        for shape in opts.shapes:  # fail before any timing on a shape the model cannot take
            make_batch(bm, shape, opts.seed)
        w0 = [p.detach().clone() for p in bm.params]
        for s_idx, shape in enumerate(opts.shapes):
            bench_shape(rows, bm, shape, w0, scaling=m_idx == 0 and s_idx == 0)
        fedkseed_rows(rows, bm, w0, ZOConfig().mode, "torch")
        if opts.memory:
            for shape in opts.shapes:
                memory_rows(rows, bm, shape)
        del bm, w0
    bench_growth(rows)


def child_main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m zofo.bench --child", description="one peak-memory child")
    p.add_argument("--child", required=True, choices=MEMORY_KINDS)
    p.add_argument("--model", required=True)
    p.add_argument("--shape", required=True)
    p.add_argument("--threads", type=int, default=BenchOptions.threads)
    p.add_argument("--seed", type=int, default=BenchOptions.seed)
    p.add_argument("--assets-dir", default=BenchOptions.assets_dir)
    p.add_argument("--generator", default="torch", choices=GENERATORS)
    p.add_argument("--dtype", default="float32", choices=list(DTYPES))
    a = p.parse_args(argv)
    from zofo.bench.options import check_model

    check_model(a.model)
    (shape,) = parse_shapes(a.shape)
    out = child_run(a.child, a.model, shape, a.threads, a.seed, a.assets_dir, a.generator, a.dtype)
    print(json.dumps(out))
    return 0
