"""``zofo bench``: what a seeded ZO step costs, measured as ratios taken in one process and one run.

Absolute seconds depend on the machine and on whatever else runs on it; a ratio of two timings taken
minutes apart in the same process, with the same threads, model and batch, mostly does not. So every
timing here has a reference timed in the same run, and the summary quotes ratios:

a. ``forward_pair``: the two forward passes a two-point ZO step needs (``torch.no_grad``), the floor
   of any ZO step; ``zo_step_lean`` / ``zo_step_fast``: ``SeededDirections.estimate`` + ``update`` in
   either mode, as a ratio to the floor.
b. ``mezo_reference_step``: a MeZO-style step written here (``mezo_reference_step``): the global
   generator reseeded before each of the four passes over the parameters, a fresh ``torch.normal``
   draw per parameter each time; as a ratio to zofo's step (lean and fast) and to the floor.
c. ``feedsign_client_shared`` / ``feedsign_client_fresh``: one FeedSign step of N clients sharing the
   step seed, per client. "shared": z generated once per step and used by every client (what zofo's
   fast mode does in simulation: one cached z per seed); "fresh": the cache is cleared before each
   client, so every client regenerates z once, as a client on its own device does.
d. ``peak_rss_*``: peak resident set (``VmHWM``, ``zofo.results.peak_rss_mb``) of a fresh child
   process that loads the model and runs two of: inference forward pairs, ZO steps (lean, fast),
   first-order AdamW steps (forward + backward + step); as a ratio to inference. Each child includes
   the interpreter, torch and the loaded model, the same in every kind.
e. ``fedkseed_incremental`` / ``fedkseed_rebuild``: FedKSeed's server update at K seeds, applying only
   the last round's pool change vs rebuilding w0 - lr * sum_j A[j] z(C_j) from the whole pool, with
   ``SeededDirections.axpy`` as ``zofo.methods.fedkseed`` does.
f. ``growth_*``: the floor and the fast ZO step on random-init Llamas of growing width;
   ``scaling_feedsign_*``: FeedSign's per-client cost against the number of clients.

Timing: ``time.perf_counter``, median of ``repeats`` after one warm-up call; every call uses a new
step seed, so fast mode never finds a previous call's z in its cache. The model's weights are restored
after each measurement. Loss: for causal LMs the model's own next-token cross-entropy with
``labels = input_ids``; for encoders the mean of the last hidden state (they have no LM head). Batches
are random token ids with full attention masks. Models with random weights (``tiny-llama``,
``rand-llama-h*``) are used for timing only: their losses mean nothing.

Nothing global changes: the thread count is put back, models are built inside ``fork_rng``, and the
reference step restores the global RNG state.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from zofo.config import ZOConfig
from zofo.errors import ConfigError
from zofo.methods.feedsign import majority_vote
from zofo.results import peak_rss_mb
from zofo.rng import derive, seed32, torch_rng
from zofo.zo import SeededDirections, trainable_parameters

DEFAULT_MODELS: tuple[str, ...] = ("smollm2-135m", "minilm-l6", "rand-llama-h256")
# rand-llama-h<hidden>: a Llama built here with random weights. Head size 32 (SmolLM2's is 64, but
# 32 lets the smallest growth sizes have heads at all), 4 layers, MLP 8/3 x hidden as Llama's,
# tied embeddings, a vocabulary of 8192 so the embedding does not swamp the small widths.
RAND_LLAMA = re.compile(r"rand-llama-h(\d+)")
RAND_LLAMA_HEAD_DIM = 32
RAND_LLAMA_LAYERS = 4
RAND_LLAMA_VOCAB = 8192
RAND_LLAMA_MAX_TOKENS = 2048

EPS = ZOConfig().eps  # the perturbation scale a run uses by default
# A step small enough to leave the model essentially where it was (every axpy still runs in full);
# the weights are restored after each measurement anyway.
LR = 1e-6
MEMORY_KINDS: tuple[str, ...] = ("inference", "zo_lean", "zo_fast", "fo_adamw")
CHILD_TIMEOUT_S = 3600
RANDOM_NOTE = "random-init weights (timing only)"
LOSS_TEXT = (
    "causal LMs: the model's next-token cross-entropy with labels = input_ids; "
    "encoders: mean of the last hidden state (no LM head)"
)
CSV_COLUMNS: tuple[str, ...] = (
    "model",
    "params",
    "shape",
    "clients",
    "measure",
    "seconds",
    "rss_mb",
    "ratio",
    "ratio_of",
    "threads",
    "repeats",
    "note",
)


# ----------------------------------------------------------------------------------------------------
# Options
# ----------------------------------------------------------------------------------------------------


def model_allowed() -> str:
    from zofo.models import PACKAGED

    return f"comma-separated names from {sorted(PACKAGED)} or rand-llama-h<hidden> (hidden a multiple of 32)"


def check_model(name: str) -> None:
    from zofo.models import PACKAGED

    if name in PACKAGED:
        return
    m = RAND_LLAMA.fullmatch(name)
    if m is None or int(m.group(1)) <= 0 or int(m.group(1)) % RAND_LLAMA_HEAD_DIM:
        raise ConfigError("--models", name, model_allowed())


def _positive_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(key, value, "an integer >= 1")
    return value


@dataclass(frozen=True)
class BenchOptions:
    """Everything ``zofo bench`` measures; the keys in errors are the command-line options."""

    models: tuple[str, ...] = DEFAULT_MODELS
    # (batch, tokens) pairs.
    shapes: tuple[tuple[int, int], ...] = ((1, 64), (16, 64))
    threads: int = 2
    repeats: int = 5
    # FeedSign (c): clients sharing one step seed.
    clients: int = 5
    # FeedSign cost against the number of clients (f), on the first model and first shape.
    scaling_clients: tuple[int, ...] = (1, 2, 5, 10)
    # Widths of the random-init Llamas of the growth series (f), timed at the first shape.
    growth_hidden: tuple[int, ...] = (64, 128, 256, 512)
    # FedKSeed (e): K seeds; the pool is what `fedkseed_clients` x `fedkseed_tau` steps per round leave
    # after `fedkseed_rounds` rounds (default: the default study's 5 clients x 5 steps x 6 rounds).
    fedkseed_k: int = 4096
    fedkseed_clients: int = 5
    fedkseed_tau: int = 5
    fedkseed_rounds: int = 6
    # A rebuild is a sum of (nonzero pool entries) equal axpys, so one timing already averages over
    # them, and at 135M parameters it takes minutes: it is timed this many times, without its own
    # warm-up (the incremental update's warm-up runs the same axpy code first).
    fedkseed_repeats: int = 1
    memory: bool = True
    seed: int = 0
    assets_dir: str = "resources"

    def __post_init__(self) -> None:
        if not self.models:
            raise ConfigError("--models", "", model_allowed())
        for name in self.models:
            check_model(name)
        if len(set(self.models)) != len(self.models):
            raise ConfigError("--models", ",".join(self.models), "each model at most once")
        if not self.shapes:
            raise ConfigError("--shapes", "", "comma-separated BATCHxTOKENS, e.g. 1x64,16x64")
        for shape in self.shapes:
            if len(shape) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in shape):
                raise ConfigError("--shapes", shape, "BATCHxTOKENS with both >= 1, e.g. 16x64")
        if len(set(self.shapes)) != len(self.shapes):
            raise ConfigError("--shapes", format_shapes(self.shapes), "each shape at most once")
        for key, value in (
            ("--threads", self.threads),
            ("--repeats", self.repeats),
            ("--clients", self.clients),
            ("--fedkseed-k", self.fedkseed_k),
            ("--fedkseed-clients", self.fedkseed_clients),
            ("--fedkseed-tau", self.fedkseed_tau),
            ("--fedkseed-rounds", self.fedkseed_rounds),
            ("--fedkseed-repeats", self.fedkseed_repeats),
        ):
            _positive_int(key, value)
        for key, values in (
            ("--scaling-clients", self.scaling_clients),
            ("--growth-hidden", self.growth_hidden),
        ):
            if not values:
                raise ConfigError(key, "", "a non-empty comma-separated list of integers >= 1")
            for v in values:
                _positive_int(key, v)
            if len(set(values)) != len(values):
                raise ConfigError(key, ",".join(map(str, values)), "each value at most once")
        for h in self.growth_hidden:
            if h % RAND_LLAMA_HEAD_DIM:
                raise ConfigError("--growth-hidden", h, f"multiples of {RAND_LLAMA_HEAD_DIM} (the head size)")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError("--seed", self.seed, "an integer >= 0")


# For tests: every measure once, on tiny models, in seconds (no memory children: each is a new
# interpreter importing torch and transformers).
QUICK = BenchOptions(
    models=("tiny-llama",),
    shapes=((1, 8),),
    repeats=1,
    clients=3,
    scaling_clients=(1, 2),
    growth_hidden=(32, 64),
    fedkseed_tau=2,
    fedkseed_rounds=3,
    memory=False,
)


def format_shape(shape: tuple[int, int]) -> str:
    return f"{shape[0]}x{shape[1]}"


def format_shapes(shapes: Sequence[tuple[int, int]]) -> str:
    return ",".join(format_shape(s) for s in shapes)


def parse_shapes(text: str) -> tuple[tuple[int, int], ...]:
    out = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", part)
        if m is None:
            raise ConfigError("--shapes", text, "comma-separated BATCHxTOKENS, e.g. 1x64,16x64")
        out.append((int(m.group(1)), int(m.group(2))))
    return tuple(out)


def parse_int(key: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(key, text, "an integer") from None


def parse_ints(key: str, text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise ConfigError(key, text, "comma-separated integers, e.g. 1,2,5,10") from None


def parse_names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``zofo bench``. Values are parsed by ``options_from_args`` (not argparse), so a
    bad value raises ConfigError naming the option, as every zofo input error does."""
    d = BenchOptions()
    p.add_argument("--out", default="results/bench", help="folder for bench.csv and bench.md")
    p.add_argument("--figures", default="figures/bench", help="folder for scaling.png and scaling.pdf")
    p.add_argument("--quick", action="store_true", help="tiny-llama, shape 1x8, 1 repeat, no memory children")
    p.add_argument("--models", help=f"comma-separated (default {','.join(d.models)})")
    p.add_argument("--shapes", help=f"BATCHxTOKENS, comma-separated (default {format_shapes(d.shapes)})")
    p.add_argument("--threads", help=f"torch threads (default {d.threads})")
    p.add_argument(
        "--repeats", help=f"timed calls per measure after 1 warm-up; the median (default {d.repeats})"
    )
    p.add_argument("--clients", help=f"FeedSign clients sharing a step seed (default {d.clients})")
    p.add_argument(
        "--scaling-clients",
        help="client counts of the FeedSign scaling series "
        f"(default {','.join(map(str, d.scaling_clients))})",
    )
    p.add_argument(
        "--growth-hidden",
        help=f"widths of the random-init Llamas of the growth series (default "
        f"{','.join(map(str, d.growth_hidden))})",
    )
    p.add_argument("--fedkseed-k", help=f"FedKSeed candidate seeds K (default {d.fedkseed_k})")
    p.add_argument("--fedkseed-clients", help=f"FedKSeed clients per round (default {d.fedkseed_clients})")
    p.add_argument("--fedkseed-tau", help=f"FedKSeed local steps per client (default {d.fedkseed_tau})")
    p.add_argument("--fedkseed-rounds", help=f"rounds that built the pool (default {d.fedkseed_rounds})")
    p.add_argument("--fedkseed-repeats", help=f"timed rebuilds (default {d.fedkseed_repeats})")
    p.add_argument(
        "--memory",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="measure peak memory in child processes (default: on, off with --quick)",
    )
    p.add_argument("--seed", help=f"seed of batches, models and step seeds (default {d.seed})")
    p.add_argument("--assets-dir", help=f"where prepared packaged models live (default {d.assets_dir})")


def options_from_args(args: argparse.Namespace) -> BenchOptions:
    """``--quick`` sets the base values; any option given explicitly overrides them."""
    changes: dict[str, Any] = {}
    if args.models is not None:
        changes["models"] = parse_names(args.models)
    if args.shapes is not None:
        changes["shapes"] = parse_shapes(args.shapes)
    for key in ("threads", "repeats", "clients", "fedkseed_k", "fedkseed_clients", "fedkseed_tau"):
        if getattr(args, key) is not None:
            changes[key] = parse_int("--" + key.replace("_", "-"), getattr(args, key))
    for key in ("fedkseed_rounds", "fedkseed_repeats", "seed"):
        if getattr(args, key) is not None:
            changes[key] = parse_int("--" + key.replace("_", "-"), getattr(args, key))
    for key in ("scaling_clients", "growth_hidden"):
        if getattr(args, key) is not None:
            changes[key] = parse_ints("--" + key.replace("_", "-"), getattr(args, key))
    if args.memory is not None:
        changes["memory"] = bool(args.memory)
    if args.assets_dir is not None:
        changes["assets_dir"] = args.assets_dir
    base = QUICK if args.quick else BenchOptions()
    return replace(base, **changes)


# ----------------------------------------------------------------------------------------------------
# Models, batches, losses
# ----------------------------------------------------------------------------------------------------


@dataclass
class BenchModel:
    name: str
    model: torch.nn.Module
    kind: str  # "causal-lm" or "encoder"
    random_init: bool
    params: list[torch.nn.Parameter] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.params = trainable_parameters(self.model)

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.params)

    @property
    def vocab(self) -> int:
        return int(self.model.config.vocab_size)

    @property
    def max_tokens(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", RAND_LLAMA_MAX_TOKENS))


def rand_llama(hidden: int, seed: int) -> torch.nn.Module:
    """A random-init Llama of width ``hidden`` (timing only)."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    heads = hidden // RAND_LLAMA_HEAD_DIM
    cfg = LlamaConfig(
        vocab_size=RAND_LLAMA_VOCAB,
        hidden_size=hidden,
        intermediate_size=RAND_LLAMA_HEAD_DIM * math.ceil(8 * hidden / 3 / RAND_LLAMA_HEAD_DIM),
        num_hidden_layers=RAND_LLAMA_LAYERS,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=RAND_LLAMA_MAX_TOKENS,
        tie_word_embeddings=True,
    )
    # transformers initialises from the global generator: fork it so building a model changes nothing
    # outside, and seed it from our own seed so the weights are reproducible.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive(seed, "bench", "rand-llama", hidden))
        return AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)


def load_bench_model(name: str, seed: int, assets_dir: str | Path) -> BenchModel:
    m = RAND_LLAMA.fullmatch(name)
    if m is not None:
        model = rand_llama(int(m.group(1)), seed)
        return BenchModel(name, model.eval(), "causal-lm", random_init=True)
    from zofo.config import ModelConfig
    from zofo.models import load_model

    loaded = load_model(ModelConfig(name=name), assets_dir=assets_dir, seed=seed)
    return BenchModel(name, loaded.model.eval(), loaded.kind, random_init=not loaded.pretrained)


def make_batch(bm: BenchModel, shape: tuple[int, int], seed: int, index: int = 0) -> dict[str, torch.Tensor]:
    """Random token ids of exactly ``shape`` with a full attention mask."""
    batch, tokens = shape
    if tokens > bm.max_tokens:
        raise ConfigError("--shapes", format_shape(shape), f"at most {bm.max_tokens} tokens for {bm.name}")
    g = torch_rng(seed, "bench", "batch", bm.name, batch, tokens, index)
    ids = torch.randint(0, bm.vocab, (batch, tokens), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def make_loss(bm: BenchModel, batch: Mapping[str, torch.Tensor]) -> Callable[[], torch.Tensor]:
    """The task-free loss of the module docstring (callers choose grad or no_grad)."""
    if bm.kind == "causal-lm":
        return lambda: bm.model(**batch, labels=batch["input_ids"]).loss
    return lambda: bm.model(**batch).last_hidden_state.mean()


@torch.no_grad()
def restore(params: Sequence[torch.Tensor], saved: Sequence[torch.Tensor]) -> None:
    for p, s in zip(params, saved, strict=True):
        p.copy_(s)


# ----------------------------------------------------------------------------------------------------
# The steps being timed
# ----------------------------------------------------------------------------------------------------


def forward_pair(loss: Callable[[], torch.Tensor]) -> None:
    """The floor of a two-point ZO step: its two forward passes, nothing else."""
    with torch.no_grad():
        float(loss())
        float(loss())


def zo_step(dirs: SeededDirections, seed: int, loss: Callable[[], torch.Tensor], lr: float = LR) -> float:
    """One ZO-SGD step with zofo's seeded directions: estimate, then w -= lr * g * z (the restore folded
    into the update when ``dirs.fuse``, as the methods' local steps do)."""
    with torch.no_grad():
        g = dirs.estimate(seed, loss, hold=True)
        dirs.update(seed, lr * g)
    return g


def _rng_devices(params: Sequence[torch.Tensor]) -> list[int]:
    # fork_rng saves and restores the CPU generator and the CUDA generators listed here.
    return sorted({p.device.index or 0 for p in params if p.device.type == "cuda"})


def mezo_reference_step(
    params: Sequence[torch.nn.Parameter],
    loss: Callable[[], torch.Tensor],
    seed: int,
    eps: float = EPS,
    lr: float = LR,
) -> float:
    """A MeZO-style step: the *global* generator reseeded with ``seed`` before each of the four passes
    over the parameters (+eps, -2 eps, +eps, update), a fresh ``torch.normal`` draw per parameter each
    time, and out-of-place arithmetic (``p.data = p.data + c * z``) as MeZO's trainer writes it. Four
    regenerations per step. Returns the projected gradient g; the weights end at w - lr * g * z (to the
    rounding of the restore). The global RNG state is put back afterwards: a benchmark must not shift
    anybody's random numbers."""

    def pass_over(scale: float) -> None:
        torch.manual_seed(seed)
        for p in params:
            z = torch.normal(mean=0.0, std=1.0, size=p.shape, device=p.device, dtype=p.dtype)
            p.data = p.data + scale * z

    with torch.random.fork_rng(devices=_rng_devices(params)), torch.no_grad():
        pass_over(eps)
        l_plus = float(loss())
        pass_over(-2.0 * eps)
        l_minus = float(loss())
        pass_over(eps)
        g = (l_plus - l_minus) / (2.0 * eps)
        pass_over(-lr * g)
    return g


def feedsign_step(
    dirs: SeededDirections,
    seed: int,
    losses: Sequence[Callable[[], torch.Tensor]],
    fresh: bool,
    lr: float = LR,
) -> None:
    """One FeedSign step: every client estimates along z(seed) and votes, then w -= lr * vote * z(seed).

    ``dirs`` is in fast mode. fresh=False: the one cached z serves every client (zofo's simulation);
    fresh=True: the cache is emptied before each client, so each regenerates z once."""
    with torch.no_grad():
        signs = []
        for loss in losses:
            if fresh:
                dirs.clear()
            signs.append(1 if dirs.estimate(seed, loss, hold=True) > 0 else -1)
        dirs.update(seed, lr * majority_vote(signs, 1))


def fedkseed_pool(opts: BenchOptions) -> tuple[torch.Tensor, torch.Tensor]:
    """A FedKSeed pool after ``fedkseed_rounds`` rounds, and the last round's change (the broadcast):
    each client draws ``fedkseed_tau`` seeds uniformly and adds a projected gradient to each; the
    change is the equal-weight mean of the clients' sums, rounded to fp32 as it is sent."""
    k, n, tau = opts.fedkseed_k, opts.fedkseed_clients, opts.fedkseed_tau
    g = torch_rng(opts.seed, "bench", "fedkseed-pool")
    pool = torch.zeros(k, dtype=torch.float64)
    delta = torch.zeros(k, dtype=torch.float32)
    for _ in range(opts.fedkseed_rounds):
        draws = torch.randint(0, k, (n * tau,), generator=g)
        grads = torch.randn(n * tau, generator=g, dtype=torch.float64)
        d64 = torch.zeros(k, dtype=torch.float64).index_add_(0, draws, grads / n)
        delta = d64.to(torch.float32)
        pool += delta.to(torch.float64)
    return pool, delta


@torch.no_grad()
def fedkseed_apply(
    dirs: SeededDirections,
    candidates: Sequence[int],
    coeffs: torch.Tensor,
    global_weights: Sequence[torch.Tensor],
    w0: Sequence[torch.Tensor] | None,
    lr: float = LR,
) -> None:
    """FedKSeed's server update as ``FedKSeed._apply`` does it: optionally reload w0 (rebuild), one
    axpy per nonzero coefficient, then the result copied into the kept global weights."""
    if w0 is not None:
        restore(dirs.params, w0)
    for j in torch.nonzero(coeffs).flatten().tolist():
        dirs.axpy(candidates[j], -lr * float(coeffs[j]))
    for g, w in zip(global_weights, dirs.params, strict=True):
        g.copy_(w)


# ----------------------------------------------------------------------------------------------------
# Timing and rows
# ----------------------------------------------------------------------------------------------------


def median_time(fn: Callable[[int], object], repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``repeats`` calls fn(i) after ``warmup`` calls fn(-1), fn(-2), ...; i makes
    each call's step seed new."""
    for i in range(warmup):
        fn(-1 - i)
    samples = []
    for i in range(repeats):
        t0 = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


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
        of: Mapping[str, float] | None = None,
        clients: int | None = None,
        repeats: int | None = None,
        note: str = "",
    ) -> None:
        """One row without a ratio, or one row per entry of ``of`` (ratio_of name -> its value)."""
        value = seconds if not math.isnan(seconds) else rss_mb
        base = {
            "model": bm_name,
            "params": params,
            "shape": shape,
            "clients": clients,
            "measure": measure,
            "seconds": seconds,
            "rss_mb": rss_mb,
            "threads": self.opts.threads,
            "repeats": self.opts.repeats if repeats is None else repeats,
            "note": note,
        }
        for ratio_of, ref in (of or {"": math.nan}).items():
            self.rows.append({**base, "ratio": value / ref if ratio_of else math.nan, "ratio_of": ratio_of})

    def frame(self) -> pd.DataFrame:
        df = pd.DataFrame(self.rows, columns=list(CSV_COLUMNS))
        df["clients"] = df["clients"].astype("Int64")
        return df


def _log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def _random_note(bm: BenchModel) -> str:
    return RANDOM_NOTE if bm.random_init else ""


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def timed_regenerations(
    dirs: SeededDirections, fn: Callable[[int], object], repeats: int
) -> tuple[float, int]:
    """``median_time`` of fn, and the z regenerations per call counted over the same calls (warm-up
    included), so counting costs no extra step."""
    before = dirs.regenerations
    seconds = median_time(fn, repeats)
    return seconds, (dirs.regenerations - before) // (repeats + 1)


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
    losses = [make_loss(bm, make_batch(bm, shape, opts.seed, index=1 + k)) for k in range(n_clients)]
    dirs = SeededDirections(bm.params, EPS, "fast", cache_size=1)
    of: dict[str, float] = {"forward_pair": floor}
    for tag in ("shared", "fresh"):

        def step(i: int, tag: str = tag) -> None:
            seed = seed32(opts.seed, "bench", "feedsign", tag, n_clients, i)
            feedsign_step(dirs, seed, losses, fresh=tag == "fresh")

        seconds, regen = timed_regenerations(dirs, step, opts.repeats)
        seconds /= n_clients
        rows.add(
            bm.name,
            bm.n_params,
            format_shape(shape),
            f"{measure_prefix}_{tag}",
            seconds=seconds,
            clients=n_clients,
            of=of,
            note=_join(f"per client-step; z regenerations per step: {regen}", _random_note(bm)),
        )
        # fresh is also reported against shared: the cost of regenerating per client
        of = {**of, f"{measure_prefix}_shared": seconds}
    dirs.clear()


def bench_shape(
    rows: Rows, bm: BenchModel, shape: tuple[int, int], w0: list[torch.Tensor], scaling: bool
) -> None:
    """Measurements a, b, c (and the FeedSign scaling series of f) of one model at one batch shape."""
    opts = rows.opts
    sh = format_shape(shape)
    loss = make_loss(bm, make_batch(bm, shape, opts.seed))
    rnote = _random_note(bm)

    floor = median_time(lambda i: forward_pair(loss), opts.repeats)
    rows.add(
        bm.name, bm.n_params, sh, "forward_pair", seconds=floor, note=_join("2 forwards, no_grad", rnote)
    )

    steps: dict[str, float] = {}
    for mode in ("lean", "fast"):
        dirs = SeededDirections(bm.params, EPS, mode, cache_size=1)

        def step(i: int, dirs: SeededDirections = dirs, mode: str = mode) -> None:
            zo_step(dirs, seed32(opts.seed, "bench", "zo", mode, i), loss)

        steps[mode], regen = timed_regenerations(dirs, step, opts.repeats)
        dirs.clear()
        restore(bm.params, w0)
        rows.add(
            bm.name,
            bm.n_params,
            sh,
            f"zo_step_{mode}",
            seconds=steps[mode],
            of={"forward_pair": floor},
            note=_join(f"z regenerations per step: {regen}", rnote),
        )
    _log(f"{bm.name} {sh}: floor {floor:.4g} s, ZO lean {steps['lean']:.4g} s, fast {steps['fast']:.4g} s")

    ref = median_time(
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
        note=_join("global generator reseeded, 4 regenerations per step", rnote),
    )
    _log(f"{bm.name} {sh}: MeZO-style reference {ref:.4g} s")

    bench_feedsign(rows, bm, shape, opts.clients, floor, "feedsign_client")
    restore(bm.params, w0)
    if scaling:
        for n in opts.scaling_clients:
            bench_feedsign(rows, bm, shape, n, floor, "scaling_feedsign")
            restore(bm.params, w0)
    _log(f"{bm.name} {sh}: FeedSign done")


def bench_fedkseed(rows: Rows, bm: BenchModel, w0: list[torch.Tensor]) -> None:
    """Measurement e: FedKSeed's server update, incremental vs rebuild, in zofo's default ZO mode."""
    opts = rows.opts
    mode = ZOConfig().mode
    pool, delta = fedkseed_pool(opts)
    # The same derivation as FedKSeed.setup, so these are the seeds a run with this seed would use.
    candidates = [seed32(opts.seed, "fedkseed", "candidate", j) for j in range(opts.fedkseed_k)]
    dirs = SeededDirections(bm.params, EPS, mode, cache_size=1)
    global_weights = [w.detach().clone() for w in bm.params]
    incremental = median_time(
        lambda i: fedkseed_apply(dirs, candidates, delta, global_weights, None), opts.repeats
    )
    restore(bm.params, w0)
    rebuild = median_time(
        lambda i: fedkseed_apply(dirs, candidates, pool, global_weights, w0), opts.fedkseed_repeats, warmup=0
    )
    restore(bm.params, w0)
    dirs.clear()
    n_inc, n_reb = int(torch.count_nonzero(delta)), int(torch.count_nonzero(pool))
    setting = (
        f"K={opts.fedkseed_k}, {opts.fedkseed_clients} clients x {opts.fedkseed_tau} steps, "
        f"{opts.fedkseed_rounds} rounds, zo.mode={mode}"
    )
    rnote = _random_note(bm)
    rows.add(
        bm.name,
        bm.n_params,
        "-",
        "fedkseed_incremental",
        seconds=incremental,
        clients=opts.fedkseed_clients,
        note=_join(f"{n_inc} regenerations (last round's nonzero changes)", setting, rnote),
    )
    rows.add(
        bm.name,
        bm.n_params,
        "-",
        "fedkseed_rebuild",
        seconds=rebuild,
        clients=opts.fedkseed_clients,
        repeats=opts.fedkseed_repeats,
        of={"fedkseed_incremental": incremental},
        note=_join(
            f"{n_reb} regenerations (nonzero pool entries) + reload of w0; no warm-up", setting, rnote
        ),
    )
    _log(f"{bm.name}: FedKSeed incremental {incremental:.4g} s ({n_inc}), rebuild {rebuild:.4g} s ({n_reb})")


def bench_growth(rows: Rows) -> None:
    """Measurement f (first half): floor and fast ZO step on random-init Llamas of growing width."""
    opts = rows.opts
    shape = opts.shapes[0]
    for hidden in opts.growth_hidden:
        bm = load_bench_model(f"rand-llama-h{hidden}", opts.seed, opts.assets_dir)
        loss = make_loss(bm, make_batch(bm, shape, opts.seed))
        floor = median_time(lambda i, loss=loss: forward_pair(loss), opts.repeats)
        dirs = SeededDirections(bm.params, EPS, "fast", cache_size=1)
        step = median_time(
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
        _log(f"{bm.name} ({bm.n_params:,} params): floor {floor:.4g} s, fast ZO step {step:.4g} s")
        del bm, dirs


# ----------------------------------------------------------------------------------------------------
# Peak memory in child processes (d)
# ----------------------------------------------------------------------------------------------------


def child_run(
    kind: str, model: str, shape: tuple[int, int], threads: int, seed: int, assets_dir: str
) -> dict:
    """What one memory child does: load the model, run ``kind`` twice, report its peak RSS. Twice, so
    that state created on first use (AdamW's moments, fast mode's z buffers, where a new seed's z is
    built while the previous one is still cached) is all alive at once, as in a run."""
    if kind not in MEMORY_KINDS:
        raise ConfigError("--child", kind, f"one of {list(MEMORY_KINDS)}")
    torch.set_num_threads(threads)
    bm = load_bench_model(model, seed, assets_dir)
    loss = make_loss(bm, make_batch(bm, shape, seed))
    loaded = peak_rss_mb()  # the part every kind shares: interpreter, torch, transformers, the model
    if kind == "inference":
        for _ in range(2):
            forward_pair(loss)
    elif kind in ("zo_lean", "zo_fast"):
        dirs = SeededDirections(bm.params, EPS, kind.removeprefix("zo_"), cache_size=1)
        for i in range(2):
            zo_step(dirs, seed32(seed, "bench", "memory", i), loss)
    else:
        opt = torch.optim.AdamW(bm.params, lr=LR)
        for _ in range(2):
            opt.zero_grad(set_to_none=True)
            loss().backward()
            opt.step()
    return {
        "kind": kind,
        "model": model,
        "params": bm.n_params,
        "peak_rss_mb": peak_rss_mb(),
        "loaded_rss_mb": loaded,
    }


def run_child(kind: str, model: str, shape: tuple[int, int], opts: BenchOptions) -> dict:
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
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=CHILD_TIMEOUT_S)
    if proc.returncode != 0:
        raise RuntimeError(f"bench memory child {kind} {model} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_memory(rows: Rows, bm: BenchModel, shape: tuple[int, int]) -> None:
    opts = rows.opts
    sh = format_shape(shape)
    out = {kind: run_child(kind, bm.name, shape, opts) for kind in MEMORY_KINDS}
    peaks = {kind: float(o["peak_rss_mb"]) for kind, o in out.items()}
    for kind in MEMORY_KINDS:
        note = _join(
            "peak RSS (VmHWM) of a fresh child process (interpreter, torch, model, then the kind run twice); "
            f"peak once the model was loaded: {float(out[kind]['loaded_rss_mb']):.0f} MB",
            _random_note(bm),
        )
        rows.add(
            bm.name,
            bm.n_params,
            sh,
            f"peak_rss_{kind}",
            rss_mb=peaks[kind],
            repeats=1,
            of=None if kind == "inference" else {"peak_rss_inference": peaks["inference"]},
            note=note,
        )
    _log(f"{bm.name} {sh}: peak RSS " + ", ".join(f"{k} {v:.0f} MB" for k, v in peaks.items()))


# ----------------------------------------------------------------------------------------------------
# The whole bench, its summary and figure
# ----------------------------------------------------------------------------------------------------


def run_bench(opts: BenchOptions) -> pd.DataFrame:
    """Every measurement of the module docstring in this process; returns the CSV rows."""
    rows = Rows(opts)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(opts.threads)
    try:
        for m_idx, name in enumerate(opts.models):
            _log(f"loading {name}")
            bm = load_bench_model(name, opts.seed, opts.assets_dir)
            for shape in opts.shapes:  # fail before any timing on a shape the model cannot take
                make_batch(bm, shape, opts.seed)
            w0 = [p.detach().clone() for p in bm.params]
            for s_idx, shape in enumerate(opts.shapes):
                bench_shape(rows, bm, shape, w0, scaling=m_idx == 0 and s_idx == 0)
            bench_fedkseed(rows, bm, w0)
            if opts.memory:
                for shape in opts.shapes:
                    bench_memory(rows, bm, shape)
            del bm, w0
        bench_growth(rows)
    finally:
        torch.set_num_threads(previous_threads)
    return rows.frame()


# Summary sections: title, what the ratio means, measures (in order).
SECTIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "a, b. Step cost",
        "A ZO step (zofo's SeededDirections, lean and fast) and a MeZO-style reference step, each against "
        "the two forward passes every two-point step needs (forward_pair, the floor); the reference "
        "also against zofo's steps.",
        ("forward_pair", "zo_step_lean", "zo_step_fast", "mezo_reference_step"),
    ),
    (
        "c. FeedSign, clients sharing the step seed",
        "Seconds per client-step. shared: z generated once per step for all clients (zofo's fast-mode "
        "simulation); fresh: each client regenerates z once (a client on its own device).",
        ("feedsign_client_shared", "feedsign_client_fresh"),
    ),
    (
        "d. Peak memory",
        "Peak resident set (MB) of a fresh child process per kind, against inference.",
        ("peak_rss_inference", "peak_rss_zo_lean", "peak_rss_zo_fast", "peak_rss_fo_adamw"),
    ),
    (
        "e. FedKSeed server update",
        "Applying only the last round's pool change (incremental, zofo's default) vs rebuilding from w0 "
        "with the whole pool (the paper's server).",
        ("fedkseed_incremental", "fedkseed_rebuild"),
    ),
    (
        "f. Growth with model size",
        "Random-init Llamas of growing width (timing only): the floor and the fast ZO step.",
        ("growth_forward_pair", "growth_zo_step_fast"),
    ),
    (
        "f. FeedSign against the number of clients",
        "Seconds per client-step on the first model and shape, against its forward_pair.",
        ("scaling_feedsign_shared", "scaling_feedsign_fresh"),
    ),
)


# The performance issue's goals, each a ratio of two measurements of this run:
# (title, model or None = the first packaged model measured, shape or "-", measure, ratio_of,
#  "<=" or ">=", target). A ratio the run did not measure is listed as not measured.
GOALS: tuple[tuple[str, str, str, str, str, float], ...] = (
    ("lean ZO step / floor", "16x64", "zo_step_lean", "forward_pair", "<=", 1.75),
    ("fast ZO step / floor", "16x64", "zo_step_fast", "forward_pair", "<=", 1.25),
    ("MeZO-style reference / lean step", "1x64", "mezo_reference_step", "zo_step_lean", ">=", 2.0),
    ("MeZO-style reference / fast step", "1x64", "mezo_reference_step", "zo_step_fast", ">=", 2.0),
    ("MeZO-style reference / lean step", "16x64", "mezo_reference_step", "zo_step_lean", ">=", 1.5),
    ("MeZO-style reference / fast step", "16x64", "mezo_reference_step", "zo_step_fast", ">=", 1.5),
    (
        "FeedSign, clients sharing z: per client-step / floor",
        "16x64",
        "feedsign_client_shared",
        "forward_pair",
        "<=",
        1.2,
    ),
    (
        "FeedSign, clients sharing z: per client-step / floor",
        "1x64",
        "feedsign_client_shared",
        "forward_pair",
        "<=",
        1.2,
    ),
    ("FedKSeed server: rebuild / incremental", "-", "fedkseed_rebuild", "fedkseed_incremental", ">=", 2.0),
    ("peak memory, lean ZO / inference", "16x64", "peak_rss_zo_lean", "peak_rss_inference", "<=", 1.15),
)
GOAL_MODEL = "smollm2-135m"


def goals_table(df: pd.DataFrame, model: str = GOAL_MODEL) -> pd.DataFrame:
    """One row per goal: the measured ratio on ``model`` and whether it meets the target."""
    out = []
    for title, shape, measure, of, op, target in GOALS:
        hit = df[
            (df["model"] == model)
            & (df["shape"] == shape)
            & (df["measure"] == measure)
            & (df["ratio_of"] == of)
        ]
        ratio = float(hit["ratio"].iloc[0]) if len(hit) else math.nan
        met = (
            "not measured"
            if math.isnan(ratio)
            else ("yes" if (ratio <= target if op == "<=" else ratio >= target) else "no")
        )
        out.append(
            {
                "goal": title,
                "shape": shape,
                "target": f"{op} {target:g}",
                "measured": "" if math.isnan(ratio) else f"{ratio:.3g}",
                "met": met,
            }
        )
    return pd.DataFrame(out)


def _fmt(x: float, unit: str) -> str:
    return "" if pd.isna(x) else f"{x:.4g} {unit}"


def summary_markdown(df: pd.DataFrame, opts: BenchOptions, header: Mapping[str, str]) -> str:
    """The Markdown summary: a header saying how it was measured, then one table per section."""
    from zofo.tables import to_markdown

    random_models = sorted(set(df.loc[df["note"].str.contains(RANDOM_NOTE, na=False, regex=False), "model"]))
    lines = [
        "# zofo bench",
        "",
        f"Measured in one process, one run ({header['when']}; {header['machine']}; "
        f"torch {torch.__version__}; zofo commit {header['commit']}). {opts.threads} torch threads; "
        f"every timing is the median of {opts.repeats} call{'s' if opts.repeats != 1 else ''} after "
        "1 warm-up (time.perf_counter), each call with a new step seed. "
        "Quote the ratios: both sides of each were timed in this run, same process, threads, model and "
        "batch.",
        "",
        f"Loss: {LOSS_TEXT}. Batches: random token ids, full attention masks; shape = batch x tokens.",
        "",
        "Random-init weights, used for timing only: " + (", ".join(random_models) or "none") + ".",
        "",
        f"Options: models {','.join(opts.models)}; shapes {format_shapes(opts.shapes)}; clients "
        f"{opts.clients}; scaling clients {','.join(map(str, opts.scaling_clients))}; growth widths "
        f"{','.join(map(str, opts.growth_hidden))}; FedKSeed K {opts.fedkseed_k}, "
        f"{opts.fedkseed_clients} clients x {opts.fedkseed_tau} steps x {opts.fedkseed_rounds} rounds; "
        f"memory {'on' if opts.memory else 'off'}; seed {opts.seed}.",
    ]
    if (df["model"] == GOAL_MODEL).any():
        lines += [
            "",
            "## Goals",
            "",
            f"The performance issue's targets on {GOAL_MODEL}, from the rows below.",
            "",
            to_markdown(goals_table(df)).rstrip(),
        ]
    for title, text, measures in SECTIONS:
        part = df[df["measure"].isin(measures)]
        if part.empty:
            continue
        table = pd.DataFrame(
            {
                "model": part["model"],
                "params": part["params"].map(lambda n: f"{int(n) / 1e6:.2f}M"),
                "shape": part["shape"],
                "clients": part["clients"].map(lambda n: "" if pd.isna(n) else str(int(n))),
                "measure": part["measure"],
                "value": [
                    _fmt(s, "s") if not pd.isna(s) else _fmt(m, "MB")
                    for s, m in zip(part["seconds"], part["rss_mb"], strict=True)
                ],
                "ratio": part["ratio"].map(lambda r: "" if pd.isna(r) else f"{r:.3g}"),
                "ratio of": part["ratio_of"].fillna(""),
                # the header lists the random-init models once
                "note": part["note"].fillna("").str.replace(RANDOM_NOTE, "", regex=False).str.strip("; "),
            }
        )
        if (table["clients"] == "").all():
            table = table.drop(columns="clients")
        lines += ["", f"## {title}", "", text, "", to_markdown(table).rstrip()]
    return "\n".join(lines) + "\n"


def scaling_figure(df: pd.DataFrame, out_png: str | Path) -> tuple[Path, Path]:
    """Two panels: seconds per step against model size (floor and fast ZO step), and FeedSign's seconds
    per client-step against the number of clients (shared and fresh z, with the floor)."""
    from matplotlib.figure import Figure

    from zofo.plots import method_color, save, style

    floor_g = df[df["measure"] == "growth_forward_pair"].sort_values("params")
    step_g = df[df["measure"] == "growth_zo_step_fast"].sort_values("params")
    scaling = df[(df["ratio_of"] == "forward_pair") & df["measure"].str.startswith("scaling_feedsign_")]
    if floor_g.empty or scaling.empty:
        raise ValueError("the scaling figure needs growth_* and scaling_feedsign_* rows")
    first = scaling.iloc[0]
    floor_s = df[
        (df["measure"] == "forward_pair") & (df["model"] == first["model"]) & (df["shape"] == first["shape"])
    ]
    zo_color, floor_color = method_color("zo-fedsgd"), "0.35"
    with style():
        fig = Figure(figsize=(9.0, 3.5))
        left, right = fig.subplots(1, 2)
        left.plot(
            floor_g["params"], floor_g["seconds"], color=floor_color, marker="o", label="2 forwards (floor)"
        )
        left.plot(
            step_g["params"],
            step_g["seconds"],
            color=zo_color,
            linestyle="--",
            marker="^",
            label="ZO step, fast",
        )
        for _, r in step_g.iterrows():
            left.annotate(
                f"×{r['ratio']:.2f}",
                (r["params"], r["seconds"]),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=7.5,
            )
        left.set_xscale("log")
        left.set_yscale("log")
        left.set_xlabel("trainable parameters (random-init Llama)")
        left.set_ylabel("seconds per step")
        left.set_title(f"step cost vs model size · {floor_g['shape'].iloc[0]}")
        left.legend(loc="upper left")
        fs_color = method_color("feedsign")
        for measure, label, ls, face in (
            ("scaling_feedsign_shared", "FeedSign, z shared", "-", None),
            ("scaling_feedsign_fresh", "FeedSign, z per client", "--", "white"),
        ):
            s = scaling[scaling["measure"] == measure].sort_values("clients")
            kw = {"markerfacecolor": face} if face else {}
            right.plot(
                s["clients"], s["seconds"], color=fs_color, linestyle=ls, marker="o", label=label, **kw
            )
        if len(floor_s):
            right.axhline(
                float(floor_s["seconds"].iloc[0]), color=floor_color, linestyle=":", label="2 forwards"
            )
        clients = sorted(int(c) for c in scaling["clients"].dropna().unique())
        right.set_xticks(clients)
        right.set_ylim(bottom=0)
        right.set_xlabel("clients sharing the step seed")
        right.set_ylabel("seconds per client-step")
        right.set_title(f"FeedSign · {first['model']} · {first['shape']}")
        right.legend(loc="lower left")  # the curves sit above the floor: the bottom stays free
        threads, repeats = int(first["threads"]), int(first["repeats"])
        note = (
            f"zofo bench, one process: {threads} threads, median of {repeats} after 1 warm-up. Left: ×r = ZO "
            "step / its two forward passes. Right: per client-step; dotted: the two forward passes. "
            "Random-init models are for timing only."
        )
        fig.text(0.0, -0.02, "\n".join(textwrap.wrap(note, 150)), fontsize=7.5, va="top", ha="left")
        return save(fig, out_png)


def write_outputs(
    df: pd.DataFrame, opts: BenchOptions, out_dir: str | Path, figures_dir: str | Path
) -> tuple[str, list[Path]]:
    """bench.csv and bench.md (atomically) and figures/scaling.{png,pdf}; returns the Markdown."""
    from zofo.results import atomic_write_text, git_info, now

    git = git_info(Path(__file__).parent)
    commit = (git["commit"] or "unknown")[:10] + (" (dirty)" if git["dirty"] else "")
    header = {
        "when": now(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
        "commit": commit,
    }
    md = summary_markdown(df, opts, header)
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / "bench.csv", df.to_csv(index=False))
    atomic_write_text(out_dir / "bench.md", md)
    png, pdf = scaling_figure(df, Path(figures_dir) / "scaling.png")
    return md, [out_dir / "bench.csv", out_dir / "bench.md", png, pdf]


def bench(opts: BenchOptions, out_dir: str | Path, figures_dir: str | Path) -> str:
    """Run everything and write the outputs; returns the Markdown summary."""
    df = run_bench(opts)
    md, _ = write_outputs(df, opts, out_dir, figures_dir)
    return md


def child_main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m zofo.bench --child", description="one peak-memory child")
    p.add_argument("--child", required=True, choices=MEMORY_KINDS)
    p.add_argument("--model", required=True)
    p.add_argument("--shape", required=True)
    p.add_argument("--threads", type=int, default=BenchOptions.threads)
    p.add_argument("--seed", type=int, default=BenchOptions.seed)
    p.add_argument("--assets-dir", default=BenchOptions.assets_dir)
    a = p.parse_args(argv)
    check_model(a.model)
    (shape,) = parse_shapes(a.shape)
    print(json.dumps(child_run(a.child, a.model, shape, a.threads, a.seed, a.assets_dir)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m zofo.bench``: a memory child with ``--child``, else the same as ``zofo bench``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a == "--child" or a.startswith("--child=") for a in args):
        return child_main(args)
    from zofo.cli import main as cli_main

    return cli_main(["bench", *args])


if __name__ == "__main__":
    sys.exit(main())
