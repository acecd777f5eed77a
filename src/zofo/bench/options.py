"""The options of ``zofo bench``: one frozen dataclass, checked once, with errors that name the option."""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from zofo.core.errors import ConfigError

SECTIONS: tuple[str, ...] = ("packaged", "generators", "sizes", "drift", "startup", "dag", "throughput")
# The sections that time whole `zofo` processes of the current code against a baseline revision's
# (zofo.bench.pipeline); none of them runs unless asked for.
PIPELINE_SECTIONS: tuple[str, ...] = ("startup", "dag", "throughput")
# What the throughput section runs: the ZO methods of the default study with the portable generator,
# and FeedSign with torch's generator (the generator a config gets when it names none).
THROUGHPUT_METHODS: tuple[str, ...] = ("feedsign", "feedsign-torch", "zo-fedsgd", "fedkseed", "fedkseed-pro")
GENERATORS: tuple[str, ...] = ("philox", "torch")
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
DEVICE = re.compile(r"cpu|cuda(:\d+)?")
DEFAULT_MODELS: tuple[str, ...] = ("smollm2-135m", "minilm-l6", "rand-llama-h256")
# rand-llama-h<hidden>: a random-init Llama (zofo.bench.models). Head size 32 (SmolLM2's is 64, but 32
# lets the smallest growth sizes have heads at all).
RAND_LLAMA = re.compile(r"rand-llama-h(\d+)")
RAND_LLAMA_HEAD_DIM = 32
DRIFT_METHODS: tuple[str, ...] = ("feedsign", "fedkseed")
# OPT-style decoder shapes (Zhang et al. 2022, table 1): hidden, layers, heads, FFN width. 350m is the
# one OPT with a 512-wide embedding projected in and out and the layer norm after each block. "tiny"
# is no OPT: the same code path in seconds, for tests and --quick.
OPT_SIZES: dict[str, tuple[int, int, int, int]] = {
    "tiny": (64, 2, 4, 256),
    "125m": (768, 12, 12, 3072),
    "350m": (1024, 24, 16, 4096),
    "1.3b": (2048, 24, 32, 8192),
    "2.7b": (2560, 32, 32, 10240),
    "6.7b": (4096, 32, 32, 16384),
    "13b": (5120, 40, 40, 20480),
    "30b": (7168, 48, 56, 28672),
    "66b": (9216, 64, 72, 36864),
}
# 66b needs 131 GB in bf16 for its weights alone: past one 80 GB GPU, so not in the default list.
DEFAULT_CUDA_SIZES: tuple[str, ...] = ("125m", "350m", "1.3b", "2.7b", "6.7b", "13b", "30b")


LAYERS_ALLOWED = "comma-separated integers >= 1 or 'all' (every block), e.g. 1,3,all"


def format_layers(n: int | None) -> str:
    """How a model size is spelled on the command line and in the rows: its blocks, or 'all'."""
    return "all" if n is None else str(n)


def model_allowed() -> str:
    from zofo.assets.catalog import PACKAGED

    return f"comma-separated names from {sorted(PACKAGED)} or rand-llama-h<hidden> (hidden a multiple of 32)"


def check_model(name: str) -> None:
    from zofo.assets.catalog import PACKAGED

    if name in PACKAGED:
        return
    if name.startswith("opt-") and name.removeprefix("opt-") in OPT_SIZES:
        return
    m = RAND_LLAMA.fullmatch(name)
    if m is None or int(m.group(1)) <= 0 or int(m.group(1)) % RAND_LLAMA_HEAD_DIM:
        raise ConfigError("--models", name, model_allowed())


def _positive_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(key, value, "an integer >= 1")
    return value


def _distinct(key: str, values: Sequence[Any], allowed: Sequence[Any] | None = None) -> None:
    if allowed is not None:
        for v in values:
            if v not in allowed:
                raise ConfigError(key, v, f"comma-separated values from {list(allowed)}")
    if len(set(values)) != len(values):
        raise ConfigError(key, ",".join(map(str, values)), "each value at most once")


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
    # them, and at 135M parameters on the CPU it takes minutes: it is timed this many times, without its
    # own warm-up (the incremental update's warm-up runs the same axpy code first).
    fedkseed_repeats: int = 1
    memory: bool = True
    seed: int = 0
    assets_dir: str = "resources"
    # Where the sizes and generator sections run: "cpu" or "cuda[:N]".
    device: str = "cpu"
    # The weights' dtype of the sizes section; None: bfloat16 on CUDA, float32 on the CPU.
    dtype: str | None = None
    # OPT-style sizes (OPT_SIZES); None: every size up to 30b on CUDA, none on the CPU.
    sizes: tuple[str, ...] | None = None
    # Which parts run; None: packaged and generators on the CPU (plus sizes when --sizes is given),
    # generators and sizes on CUDA.
    sections: tuple[str, ...] | None = None
    generators: tuple[str, ...] = GENERATORS
    # Normals per generator timing; None: 2^24 on the CPU, 2^28 (1 GiB in fp32) on CUDA, past any cache.
    gen_numel: int | None = None
    # A measure whose calls would take longer than this in all is timed fewer times (at least once
    # after its warm-up); one whose single call is estimated above it is skipped, with a note.
    max_seconds: float = 120.0
    # Cross-hardware drift (section "drift"): a model to train and the rounds of each method.
    drift_model: str = "minilm-l6"
    drift_methods: tuple[str, ...] = DRIFT_METHODS
    drift_rounds: int = 40  # FeedSign: one step per round
    drift_fedkseed_rounds: int = 30  # one local step per client and round (zofo.bench.drift)
    drift_jobs: int = 2
    # Sections startup, dag, throughput (zofo.bench.pipeline): the revision the current code is timed
    # against (None: the current code alone), the packaged model their runs train, the model sizes
    # (model.layers; None = every block), the methods, FeedSign's and ZO-FedSGD's rounds, FedKSeed's
    # local steps (one round), the untimed runs per tree before the timed ones (page cache, bytecode; the
    # throughput section's profiled run is its untimed run), the timed runs per tree and measure, and
    # the torch threads of each run (the default study's threads_per_run).
    baseline: str | None = "perf-baseline"
    pipeline_model: str = "minilm-l6"
    throughput_layers: tuple[int | None, ...] = (1, 3, None)
    throughput_methods: tuple[str, ...] = THROUGHPUT_METHODS
    throughput_rounds: int = 10
    throughput_fedkseed_steps: int = 15
    pipeline_warmup: int = 1
    pipeline_repeats: int = 3
    run_threads: int = 1

    def __post_init__(self) -> None:
        if not self.models:
            raise ConfigError("--models", "", model_allowed())
        for name in self.models:
            check_model(name)
        _distinct("--models", self.models)
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
            ("--drift-rounds", self.drift_rounds),
            ("--drift-fedkseed-rounds", self.drift_fedkseed_rounds),
            ("--drift-jobs", self.drift_jobs),
            ("--throughput-rounds", self.throughput_rounds),
            ("--throughput-fedkseed-steps", self.throughput_fedkseed_steps),
            ("--pipeline-repeats", self.pipeline_repeats),
            ("--run-threads", self.run_threads),
        ):
            _positive_int(key, value)
        if self.gen_numel is not None:
            _positive_int("--gen-numel", self.gen_numel)
        w = self.pipeline_warmup
        if isinstance(w, bool) or not isinstance(w, int) or w < 0:
            raise ConfigError("--pipeline-warmup", w, "an integer >= 0")
        for key, values in (
            ("--scaling-clients", self.scaling_clients),
            ("--growth-hidden", self.growth_hidden),
        ):
            if not values:
                raise ConfigError(key, "", "a non-empty comma-separated list of integers >= 1")
            for v in values:
                _positive_int(key, v)
            _distinct(key, values)
        for h in self.growth_hidden:
            if h % RAND_LLAMA_HEAD_DIM:
                raise ConfigError("--growth-hidden", h, f"multiples of {RAND_LLAMA_HEAD_DIM} (the head size)")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError("--seed", self.seed, "an integer >= 0")
        if not isinstance(self.device, str) or DEVICE.fullmatch(self.device) is None:
            raise ConfigError("--device", self.device, "cpu, cuda or cuda:N")
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ConfigError("--dtype", self.dtype, f"one of {list(DTYPES)}")
        if self.sizes is not None:
            _distinct("--sizes", self.sizes, list(OPT_SIZES))
        if self.sections is not None:
            if not self.sections:
                raise ConfigError("--sections", "", f"comma-separated values from {list(SECTIONS)}")
            _distinct("--sections", self.sections, SECTIONS)
            if "packaged" in self.sections and self.on_cuda:
                raise ConfigError(
                    "--sections", "packaged", "the packaged models on the CPU only (--device cpu)"
                )
        if not self.generators:
            raise ConfigError("--generators", "", f"comma-separated values from {list(GENERATORS)}")
        _distinct("--generators", self.generators, GENERATORS)
        if isinstance(self.max_seconds, bool) or not isinstance(self.max_seconds, (int, float)):
            raise ConfigError("--max-seconds", self.max_seconds, "a number > 0")
        if not self.max_seconds > 0:
            raise ConfigError("--max-seconds", self.max_seconds, "a number > 0")
        if not self.drift_methods:
            raise ConfigError("--drift-methods", "", f"comma-separated values from {list(DRIFT_METHODS)}")
        _distinct("--drift-methods", self.drift_methods, DRIFT_METHODS)
        from zofo.assets.catalog import PACKAGED

        if self.drift_model not in PACKAGED:
            raise ConfigError("--drift-model", self.drift_model, f"one of {sorted(PACKAGED)}")
        if self.pipeline_model not in PACKAGED:
            raise ConfigError("--pipeline-model", self.pipeline_model, f"one of {sorted(PACKAGED)}")
        if not self.throughput_methods:
            raise ConfigError(
                "--throughput-methods", "", f"comma-separated values from {list(THROUGHPUT_METHODS)}"
            )
        _distinct("--throughput-methods", self.throughput_methods, THROUGHPUT_METHODS)
        if not self.throughput_layers:
            raise ConfigError("--throughput-layers", "", LAYERS_ALLOWED)
        for n in self.throughput_layers:
            if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
                raise ConfigError("--throughput-layers", n, LAYERS_ALLOWED)
        _distinct("--throughput-layers", [format_layers(n) for n in self.throughput_layers])
        if self.baseline is not None and (not isinstance(self.baseline, str) or not self.baseline.strip()):
            raise ConfigError("--baseline", self.baseline, "a git revision (tag, branch, commit) or 'none'")

    @property
    def on_cuda(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def torch_dtype(self) -> torch.dtype:
        """The sizes section's weight dtype."""
        if self.dtype is not None:
            return DTYPES[self.dtype]
        return torch.bfloat16 if self.on_cuda else torch.float32

    @property
    def run_sizes(self) -> tuple[str, ...]:
        if self.sizes is not None:
            return self.sizes
        return DEFAULT_CUDA_SIZES if self.on_cuda else ()

    @property
    def run_sections(self) -> tuple[str, ...]:
        if self.sections is not None:
            return self.sections
        if self.on_cuda:
            return ("generators", "sizes")
        return ("packaged", "generators", *(("sizes",) if self.run_sizes else ()))

    @property
    def numel(self) -> int:
        if self.gen_numel is not None:
            return self.gen_numel
        return 1 << 28 if self.on_cuda else 1 << 24


# For tests and a look at the harness: every measure once, on tiny models, in seconds on the CPU (no
# memory children: each is a new interpreter importing torch and transformers).
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
    sizes=("tiny",),
    gen_numel=1 << 16,
    max_seconds=30.0,
    drift_model="tiny-llama",
    drift_rounds=3,
    drift_fedkseed_rounds=2,
    pipeline_model="tiny-llama",
    throughput_layers=(None,),
    throughput_rounds=2,
    throughput_fedkseed_steps=2,
    pipeline_warmup=0,
    pipeline_repeats=1,
)


def parse_layers(text: str) -> tuple[int | None, ...]:
    out: list[int | None] = []
    for part in text.split(","):
        part = part.strip()
        if part == "all":
            out.append(None)
        elif part.isdigit():
            out.append(int(part))
        else:
            raise ConfigError("--throughput-layers", text, LAYERS_ALLOWED)
    return tuple(out)


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


def parse_float(key: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(key, text, "a number") from None


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
    p.add_argument("--out", default="results/bench", help="folder for bench.csv/md (and drift.csv/md)")
    p.add_argument("--figures", default="figures/bench", help="folder for scaling.png and scaling.pdf")
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny models, shape 1x8, 1 repeat, no memory children, OPT size 'tiny'; drift on tiny-llama",
    )
    p.add_argument(
        "--device",
        help="cpu (default) or cuda[:N]: where the generator and sizes sections run (the packaged "
        "models always run on the CPU)",
    )
    p.add_argument(
        "--dtype",
        help=f"weights of the sizes section, one of {list(DTYPES)} (default: bf16 on "
        "CUDA, float32 on the CPU)",
    )
    p.add_argument(
        "--sizes",
        help=f"OPT-style sizes from {list(OPT_SIZES)}, comma-separated, or 'none' (default: "
        f"{','.join(DEFAULT_CUDA_SIZES)} on CUDA, none on the CPU); random-init weights (timing and memory)",
    )
    p.add_argument(
        "--sections",
        help=f"comma-separated from {list(SECTIONS)} (default: packaged,generators[,sizes] on the CPU, "
        "generators,sizes on CUDA)",
    )
    p.add_argument("--drift", action="store_true", help="only the cross-hardware drift measurement")
    p.add_argument("--generators", help=f"ZO generators timed (default {','.join(d.generators)})")
    p.add_argument("--gen-numel", help="normals per generator timing (default 2^24 CPU, 2^28 CUDA)")
    p.add_argument(
        "--max-seconds",
        help=f"time budget of one measure; fewer repeats or a skip past it (default {d.max_seconds:g})",
    )
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
        help="measure peak memory (CPU: child processes; CUDA: peak allocated); default on, off with --quick",
    )
    p.add_argument("--drift-model", help=f"packaged model the drift section trains (default {d.drift_model})")
    p.add_argument("--drift-methods", help=f"drift section methods (default {','.join(d.drift_methods)})")
    p.add_argument("--drift-rounds", help=f"FeedSign rounds of the drift section (default {d.drift_rounds})")
    p.add_argument(
        "--drift-fedkseed-rounds",
        help=f"FedKSeed rounds of the drift section (default {d.drift_fedkseed_rounds})",
    )
    p.add_argument("--drift-jobs", help=f"party processes run at once (default {d.drift_jobs})")
    p.add_argument(
        "--baseline",
        help=f"sections {','.join(PIPELINE_SECTIONS)}: the git revision timed against the current code, "
        f"or 'none' (default {d.baseline})",
    )
    p.add_argument(
        "--pipeline-model",
        help=f"packaged model of the startup and throughput runs (default {d.pipeline_model})",
    )
    p.add_argument(
        "--throughput-layers",
        help="model sizes of the throughput section: model.layers values, 'all' for every block "
        f"(default {','.join(format_layers(n) for n in d.throughput_layers)})",
    )
    p.add_argument(
        "--throughput-methods",
        help=f"comma-separated from {list(THROUGHPUT_METHODS)} (default all)",
    )
    p.add_argument(
        "--throughput-rounds",
        help=f"FeedSign and ZO-FedSGD rounds of a throughput run (default {d.throughput_rounds})",
    )
    p.add_argument(
        "--throughput-fedkseed-steps",
        help="FedKSeed(-Pro) local steps of its one throughput round "
        f"(default {d.throughput_fedkseed_steps})",
    )
    p.add_argument(
        "--pipeline-warmup",
        help=f"untimed processes per tree before the timed ones, sections startup and dag (default "
        f"{d.pipeline_warmup}; 0 with --quick)",
    )
    p.add_argument(
        "--pipeline-repeats",
        help=f"timed processes per tree and measure of sections {','.join(PIPELINE_SECTIONS)}, "
        f"interleaved between the trees; the median (default {d.pipeline_repeats})",
    )
    p.add_argument("--run-threads", help=f"torch threads of each timed run (default {d.run_threads})")
    p.add_argument("--seed", help=f"seed of batches, models and step seeds (default {d.seed})")
    p.add_argument("--assets-dir", help=f"where prepared packaged models live (default {d.assets_dir})")


INT_OPTIONS = (
    "threads",
    "repeats",
    "clients",
    "fedkseed_k",
    "fedkseed_clients",
    "fedkseed_tau",
    "fedkseed_rounds",
    "fedkseed_repeats",
    "seed",
    "gen_numel",
    "drift_rounds",
    "drift_fedkseed_rounds",
    "drift_jobs",
    "throughput_rounds",
    "throughput_fedkseed_steps",
    "pipeline_warmup",
    "pipeline_repeats",
    "run_threads",
)


def options_from_args(args: argparse.Namespace) -> BenchOptions:
    """``--quick`` sets the base values; any option given explicitly overrides them."""
    changes: dict[str, Any] = {}
    if args.models is not None:
        changes["models"] = parse_names(args.models)
    if args.shapes is not None:
        changes["shapes"] = parse_shapes(args.shapes)
    for key in INT_OPTIONS:
        if getattr(args, key) is not None:
            changes[key] = parse_int("--" + key.replace("_", "-"), getattr(args, key))
    for key in ("scaling_clients", "growth_hidden"):
        if getattr(args, key) is not None:
            changes[key] = parse_ints("--" + key.replace("_", "-"), getattr(args, key))
    for key in ("generators", "drift_methods", "throughput_methods"):
        if getattr(args, key) is not None:
            changes[key] = parse_names(getattr(args, key))
    if args.sizes is not None:
        changes["sizes"] = () if args.sizes.strip() == "none" else parse_names(args.sizes)
    if args.sections is not None:
        changes["sections"] = parse_names(args.sections)
    if args.drift:
        if args.sections is not None:
            raise ConfigError("--drift", "with --sections", "one of them (--drift is --sections drift)")
        changes["sections"] = ("drift",)
    if args.throughput_layers is not None:
        changes["throughput_layers"] = parse_layers(args.throughput_layers)
    if args.baseline is not None:
        changes["baseline"] = None if args.baseline.strip() == "none" else args.baseline.strip()
    if args.max_seconds is not None:
        changes["max_seconds"] = parse_float("--max-seconds", args.max_seconds)
    if args.memory is not None:
        changes["memory"] = bool(args.memory)
    for key in ("assets_dir", "device", "dtype", "drift_model", "pipeline_model"):
        if getattr(args, key) is not None:
            changes[key] = getattr(args, key)
    base = QUICK if args.quick else BenchOptions()
    return replace(base, **changes)
