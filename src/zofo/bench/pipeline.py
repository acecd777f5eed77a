"""Sections startup, dag and throughput: what a user of the default study waits for, timed in whole
processes of the current code and of a baseline revision (``--baseline``, default the tag
``perf-baseline``), in the same bench run.

Both trees run as subprocesses with ``PYTHONPATH=<tree>/src``. The current tree is the source tree the
running ``zofo`` was imported from; the baseline is an export (``git archive``) of the revision into a
temporary folder, given the current compiled generator kernel when its kernel source is the same file
(without the kernel the baseline draws the same numbers through plain torch ops, only slower, which would
time the build rather than the code). Each measure runs ``pipeline_warmup`` times untimed per tree (page
cache, bytecode), then ``pipeline_repeats`` times per tree, interleaved (current, baseline, current,
baseline, ...) so that whatever else loads the machine hits both; a row keeps the median, and the
current tree's row also carries the ratio current / baseline (``ratio_of`` ``MEASURE@baseline``).
Without the revision (no git, a shallow clone, an unknown name) one line says why and the current code
is reported alone. Rows ``tree`` say what each tree is.

Rows (``tree`` says whose):

- ``startup_fixed``: a run's fixed cost: the wall time of a 1-round ``python -m zofo.cli run`` of the
  tree's default config (config/config.yaml: run_defaults and the feedsign block, the whole model) minus
  what follows the start of its first training step (the round's client_seconds + server_seconds and the
  evaluation after it, from rounds.jsonl): process start, imports, data and model loading, the round-0
  evaluation, and the process's exit. ``startup_eval0`` is that round-0 evaluation alone;
  ``import_engine_loop`` is ``import zofo.engine.loop`` in a fresh interpreter.
- ``dag_dry_run``: ``snakemake -n -q --cores 2`` in the tree's folder (its Snakefile and default config).
- ``throughput_<method>``: two-point estimates per second of training. A run of the method
  (``throughput_config``) evaluates at the start and after its last round only; estimates = the last
  row's local_steps_total, seconds = the rows' client_seconds + server_seconds (no evaluation in them).
  One more run under cProfile (``zofo.bench.probe``: each round profiled from its start to its end)
  splits that time (``split_profile``) into forward passes, drawing directions, weight moves and the
  rest; cProfile adds a cost to every Python call, so the split is of the profiled run: where the time
  goes, not how much there is. ``throughput_feedsign_default`` repeats the FeedSign row that uses the
  generator of the tree's default config (old default against new default).
"""

from __future__ import annotations

import filecmp
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from zofo.bench.common import SHARES, Rows, join, log
from zofo.bench.options import BenchOptions, format_layers
from zofo.core.errors import ZofoError

CURRENT, BASELINE = "current", "baseline"
# A process that takes longer is stopped and its measure reported as failed.
PROCESS_TIMEOUT_S = 3600
DAG_COMMAND: tuple[str, ...] = ("snakemake", "-n", "-q", "--cores", "2")
PROBE = Path(__file__).with_name("probe.py")

# The throughput runs: the default study's ZO settings (each tree's config/config.yaml run_defaults'
# zo section, ``with_tree_zo``, and method
# blocks), one evaluation at each end on a small subset (evaluation is not timed; it only has to run).
THROUGHPUT_BATCH, THROUGHPUT_TOKENS, THROUGHPUT_CLIENTS = 8, 24, 5
THROUGHPUT_EVAL_EXAMPLES = 16
# method variant -> (registered method, zo.generator, params without local_steps)
THROUGHPUT_RUNS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "feedsign": ("feedsign", "philox", {"lr": 1.0e-3}),
    "feedsign-torch": ("feedsign", "torch", {"lr": 1.0e-3}),
    "zo-fedsgd": ("zo-fedsgd", "philox", {"lr": 2.0e-4}),
    "fedkseed": ("fedkseed", "philox", {"lr": 2.0e-4, "K": 4096}),
    "fedkseed-pro": ("fedkseed-pro", "philox", {"lr": 2.0e-4, "K": 4096}),
}
# FeedSign under each generator: which variant a tree's default config runs.
FEEDSIGN_BY_GENERATOR = {"philox": "feedsign", "torch": "feedsign-torch"}


class BaselineError(ZofoError):
    """The baseline revision cannot be exported: no git, not a repository, or an unknown revision."""


class MeasureFailed(Exception):
    """One process of a measure did not give a number; the message says why."""


# -- the trees ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tree:
    """A source tree whose ``src/zofo`` a subprocess imports."""

    name: str
    root: Path
    description: str

    def env(self) -> dict[str, str]:
        # Only the import path changes: the tree's src/ comes before any installed zofo.
        return {**os.environ, "PYTHONPATH": str(self.root / "src")}


def current_root() -> Path:
    """The source tree the running zofo was imported from (``<root>/src/zofo``)."""
    import zofo

    root = Path(zofo.__file__).resolve().parents[2]
    if not (root / "src" / "zofo" / "__init__.py").is_file():
        raise ZofoError(
            f"sections startup, dag, throughput time a source tree; zofo was imported from "
            f"{Path(zofo.__file__).parent}, which is not one (<root>/src/zofo)"
        )
    return root


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=120)


def build_baseline(rev: str, dest: str | Path, repo: str | Path | None = None) -> tuple[Path, str]:
    """Export revision ``rev`` of the git repository holding ``repo`` (default: the current source tree)
    into the folder ``dest``; returns (the tree's root, a description). The current compiled generator
    kernel is copied in when the revision's kernel source is the same file as the current one.

    Raises BaselineError, naming the revision and the reason, when it cannot."""
    repo = Path(repo) if repo is not None else current_root()
    try:
        top = _git(repo, "rev-parse", "--show-toplevel")
    except (OSError, subprocess.SubprocessError) as e:
        raise BaselineError(f"--baseline {rev}: git cannot run here ({e})") from None
    if top.returncode != 0:
        raise BaselineError(f"--baseline {rev}: {repo} is not in a git repository")
    root = Path(top.stdout.strip())
    found = _git(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if found.returncode != 0:
        shallow = _git(root, "rev-parse", "--is-shallow-repository").stdout.strip() == "true"
        hint = (
            " (a shallow clone: `git fetch --unshallow --tags` brings the history and tags)"
            if shallow
            else " (`git tag` and `git log` list what there is)"
        )
        raise BaselineError(f"--baseline {rev}: unknown revision in {root}{hint}")
    commit = found.stdout.strip()
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.Popen(
        ["git", "-C", str(root), "archive", "--format=tar", commit], stdout=subprocess.PIPE
    )
    assert archive.stdout is not None
    with tarfile.open(fileobj=archive.stdout, mode="r|") as tar:
        # The "data" filter (no absolute paths, links out of dest, devices) where this Python has it.
        tar.extractall(dest, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    if archive.wait() != 0:
        raise BaselineError(f"--baseline {rev}: `git archive {commit}` failed")
    if not (dest / "src" / "zofo" / "__init__.py").is_file():
        raise BaselineError(f"--baseline {rev}: revision {commit[:10]} has no src/zofo package")
    return dest, f"{rev} = {commit[:10]}; " + copy_kernel(repo / "src" / "zofo" / "core", dest)


def copy_kernel(current_core: Path, tree: Path) -> str:
    """Give ``tree`` the compiled generator kernels of ``current_core`` when its kernel source is the same
    file; returns what was done, for the report."""
    core = tree / "src" / "zofo" / "core"
    kernels = sorted(current_core.glob("_philox*.so")) + sorted(current_core.glob("_philox*.pyd"))
    if not kernels:
        return "no compiled kernel in the current tree: both draw through torch ops"
    if not (core / "_philox.c").is_file():
        return "the baseline has no kernel source: its own generator code"
    if not filecmp.cmp(current_core / "_philox.c", core / "_philox.c", shallow=False):
        return compile_kernel(tree)
    for k in kernels:
        shutil.copy2(k, core / k.name)
    return "the current compiled kernel copied in (same kernel source)"


def compile_kernel(tree: Path) -> str:
    """Build ``tree``'s own generator kernel in place, with the compile flags its pyproject.toml gives
    (a baseline whose kernel source differs must not draw through the slower torch ops, nor through
    the current kernel); returns what was done, for the report."""
    import sysconfig
    import tempfile
    import tomllib

    from setuptools import Distribution, Extension

    core = tree / "src" / "zofo" / "core"
    try:
        meta = tomllib.loads((tree / "pyproject.toml").read_text())
        spec = next(m for m in meta["tool"]["setuptools"]["ext-modules"] if m["name"] == "zofo.core._philox")
        ext = Extension(
            "zofo.core._philox",
            [str(core / "_philox.c")],
            extra_compile_args=spec.get("extra-compile-args", []),
        )
        with tempfile.TemporaryDirectory() as tmp:
            cmd = Distribution({"ext_modules": [ext]}).get_command_obj("build_ext")
            cmd.build_lib, cmd.build_temp = tmp, str(Path(tmp) / "temp")
            cmd.ensure_finalized()
            cmd.run()
            suffix = sysconfig.get_config_var("EXT_SUFFIX")
            shutil.copy2(Path(tmp) / "zofo" / "core" / f"_philox{suffix}", core / f"_philox{suffix}")
    except Exception as e:  # no compiler, no flags: the baseline's pure-torch path, and the report says so
        reason = f"{type(e).__name__}: {e}"
        return f"its kernel source differs and did not compile ({reason}): it draws through torch ops"
    return "its own kernel source compiled with its own flags (it differs from the current one)"


def describe_current(root: Path) -> str:
    from zofo.engine.record import git_info

    git = git_info(root)
    commit = (git["commit"] or "unknown")[:10]
    return f"{root} at {commit}" + (" with uncommitted changes" if git["dirty"] else "")


def make_trees(opts: BenchOptions, work: Path) -> tuple[list[Tree], str]:
    """The trees to time (current first; the baseline exported under ``work``) and a line saying what
    the baseline is, or why there is none."""
    root = current_root()
    out = [Tree(CURRENT, root, describe_current(root))]
    if opts.baseline is None:
        line = "Baseline: none asked for (--baseline none); the current code alone, no ratios."
    else:
        try:
            path, what = build_baseline(opts.baseline, work / "baseline", root)
            out.append(Tree(BASELINE, path, what))
            line = f"Baseline: {what}."
        except BaselineError as e:
            line = f"Baseline unavailable: {e}. The current code alone, no ratios."
            print(f"zofo bench: {line}", file=sys.stderr, flush=True)
    log(line)
    return out, line


# -- processes ---------------------------------------------------------------------------------------


def run_timed(cmd: Sequence[str], tree: Tree, cwd: Path) -> float:
    """Wall seconds of one process of ``tree``, from launch to exit; MeasureFailed unless it exits 0."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            list(cmd), cwd=cwd, env=tree.env(), capture_output=True, text=True, timeout=PROCESS_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        raise MeasureFailed(f"{' '.join(cmd[:4])} ran past {PROCESS_TIMEOUT_S} s") from None
    except OSError as e:
        raise MeasureFailed(f"{cmd[0]} cannot run: {e}") from None
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        lines = [x for x in (proc.stderr or proc.stdout).splitlines() if x.strip()]
        raise MeasureFailed(f"exit {proc.returncode}: {lines[-1] if lines else 'no output'}")
    return seconds


def probe_command(*args: str) -> list[str]:
    """``python`` running zofo.bench.probe by path: with ``-c``, the first entry of sys.path is the working
    directory, not this package's folder, so the tree's zofo is the one imported."""
    code = "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
    return [sys.executable, "-c", code, str(PROBE), *args]


def zofo_run_command(config: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "zofo.cli", "run", str(config), "--out", str(out), "--quiet"]


def read_run(out: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A finished run folder's rows and metadata; MeasureFailed unless the run ended "ok"."""
    try:
        meta = json.loads((out / "meta.json").read_text())
        rows = [json.loads(x) for x in (out / "rounds.jsonl").read_text().splitlines() if x.strip()]
    except (OSError, ValueError) as e:
        raise MeasureFailed(f"no readable run folder in {out}: {e}") from None
    if meta.get("status") != "ok":
        raise MeasureFailed(f"run ended {meta.get('status')!r}: {meta.get('reason')}")
    return rows, meta


def training_seconds(rows: Sequence[Mapping[str, Any]]) -> float:
    """Seconds of the clients' and the server's work over every round (evaluation is not in them)."""
    return sum(float(r["client_seconds"]) + float(r["server_seconds"]) for r in rows if r["round"] >= 1)


@dataclass
class Samples:
    """One measure's numbers per tree; a tree whose process failed keeps the reason and stops."""

    values: dict[str, list[Any]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    def ok(self, tree: str) -> bool:
        return tree not in self.failed and bool(self.values.get(tree))


def interleaved(
    tree_list: Sequence[Tree], measure: Callable[[Tree, int], Any], repeats: int, warmup: int = 1
) -> Samples:
    """``warmup`` rounds of ``measure(tree, i)`` with i < 0 (their values are dropped), then ``repeats``
    rounds with i = 0, 1, ...; each round calls the trees in their order: current, baseline, current,
    baseline, ... A tree whose call fails is not called again."""
    out = Samples({t.name: [] for t in tree_list})

    def call(t: Tree, i: int) -> None:
        if t.name in out.failed:
            return
        try:
            value = measure(t, i)
        except MeasureFailed as e:
            out.failed[t.name] = str(e)
            log(f"{t.name} failed: {e}")
            return
        if i >= 0:
            out.values[t.name].append(value)

    for i in range(warmup):
        for t in tree_list:
            call(t, -1 - i)
    for i in range(repeats):
        for t in tree_list:
            call(t, i)
    return out


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


# -- profile attribution -----------------------------------------------------------------------------

# pstats: (file, line, function) -> (primitive calls, calls, tottime, cumtime, callers), callers:
# (file, line, function) -> (calls, primitive calls, tottime, cumtime) of the calls from that caller.
StatsKey = tuple[str, int, str]
StatsEntry = tuple[int, int, float, float, Mapping[StatsKey, tuple[int, int, float, float]]]

MODULE_FILE = "torch/nn/modules/module.py"
MODULE_CALLS = ("_call_impl", "_wrapped_call_impl")
PHILOX_FILE = "zofo/core/philox.py"
PHILOX_KERNEL = "zofo.core._philox."
# torch's generator: what zo.generator torch draws with.
TORCH_DRAWS = ("normal_", "randn", "normal", "randn_like")
# What moves weights along z: w.add_(z, alpha) (torch), w.add_(torch.mul(z, alpha)) (philox), and the
# copies and in-place scalings around them.
MOVE_OPS = ("add_", "sub_", "mul", "mul_", "copy_")
_BUILTIN = re.compile(r"<(?:built-in method|built-in function|method) '?([\w.]+)'?")


def _path(key: StatsKey) -> str:
    return key[0].replace(os.sep, "/")


def builtin_name(key: StatsKey) -> str | None:
    """The dotted name of a C function as cProfile names it ("torch.mul", "add_",
    "zofo.core._philox.normal"), None for a Python function."""
    if key[0] != "~":
        return None
    m = _BUILTIN.match(key[2])
    return m.group(1) if m else None


def _in_philox(key: StatsKey) -> bool:
    return _path(key).endswith(PHILOX_FILE)


# The generator module's weight move (the portable add, one pass in the kernel): a move, not a draw.
MOVE_KERNEL = PHILOX_KERNEL + "axpy"
MOVE_FUNCTION = "portable_axpy_"


def _is_draw(key: StatsKey) -> bool:
    name = builtin_name(key)
    if name is None:
        return _in_philox(key) and key[2] != MOVE_FUNCTION
    if name == MOVE_KERNEL:
        return False
    return name.startswith(PHILOX_KERNEL) or name.rsplit(".", 1)[-1] in TORCH_DRAWS


def _moves_weights(caller: StatsKey) -> bool:
    """A caller whose in-place tensor ops are weight moves: zofo's own code outside the models and
    objectives (whose ops are part of a forward pass) and outside the generator (part of a draw)."""
    path = _path(caller)
    return "/zofo/" in path and "/zofo/assets/" not in path and not path.endswith(PHILOX_FILE)


@dataclass(frozen=True)
class ProfileSplit:
    """Seconds of a profiled stretch: in all, and in forward passes, draws, weight moves and the rest."""

    total: float
    forward: float
    draw: float
    moves: float

    @property
    def other(self) -> float:
        return max(0.0, self.total - self.forward - self.draw - self.moves)

    def shares(self) -> dict[str, float]:
        parts = dict(zip(SHARES, (self.forward, self.draw, self.moves, self.other), strict=True))
        return {k: v / self.total if self.total > 0 else math.nan for k, v in parts.items()}


def split_profile(stats: Mapping[StatsKey, StatsEntry]) -> ProfileSplit:
    """Attribute the time of a pstats table (``pstats.Stats(path).stats``):

    - total: the sum of every function's own time (tottime);
    - forward: the cumulative time of nn.Module calls (``Module._call_impl`` / ``_wrapped_call_impl``),
      which for a recursive function cProfile counts over the outermost calls only, so nested modules
      are not counted twice; the larger of the two (one wraps the other);
    - draw: the cumulative time spent in the portable generator (``zofo/core/philox.py``, its compiled
      kernel ``zofo.core._philox``) and torch's normal_ / randn, counted on entry from outside the
      generator (so its internal calls are not counted twice);
    - moves: the own time of add_, sub_, mul, mul_, copy_ called directly from zofo's code outside the
      models, objectives and generator (``_moves_weights``), and of the kernel's portable add
      (``zofo.core._philox.axpy``, reached through ``philox.portable_axpy_``, which is no draw);
    - other: the rest.
    """
    total = sum(entry[2] for entry in stats.values())
    forward = max(
        (e[3] for k, e in stats.items() if _path(k).endswith(MODULE_FILE) and k[2] in MODULE_CALLS),
        default=0.0,
    )
    draw = moves = 0.0
    for key, (_, _, _, cumtime, callers) in stats.items():
        if _is_draw(key):
            if not callers:
                draw += cumtime
            draw += sum(c[3] for caller, c in callers.items() if not _is_draw(caller))
        name = builtin_name(key)
        if name == MOVE_KERNEL:
            moves += sum(c[2] for c in callers.values())
        elif name is not None and name.rsplit(".", 1)[-1] in MOVE_OPS:
            moves += sum(c[2] for caller, c in callers.items() if _moves_weights(caller))
    return ProfileSplit(total=total, forward=forward, draw=draw, moves=moves)


def read_profile(path: Path) -> ProfileSplit:
    import pstats

    return split_profile(pstats.Stats(str(path)).stats)  # type: ignore[attr-defined]


# -- configs -----------------------------------------------------------------------------------------


def throughput_config(opts: BenchOptions, variant: str, layers: int | None) -> dict[str, Any]:
    """The RunConfig mapping of one throughput run: the default study's settings for the method."""
    method, generator, params = THROUGHPUT_RUNS[variant]
    if method.startswith("fedkseed"):
        rounds, params = 1, {**params, "local_steps": opts.throughput_fedkseed_steps}
    else:
        rounds = opts.throughput_rounds
    model: dict[str, Any] = {"name": opts.pipeline_model}
    if layers is not None:
        model["layers"] = layers
    return {
        "model": model,
        "task": {
            "name": "bbc-news",
            "max_input_tokens": THROUGHPUT_TOKENS,
            "eval_split": "test",
            "eval_max_examples": THROUGHPUT_EVAL_EXAMPLES,
            "eval_batch_size": 32,
        },
        "partition": {"name": "dirichlet", "num_clients": THROUGHPUT_CLIENTS, "alpha": 0.5, "min_size": 8},
        "federation": {
            "batch_size": THROUGHPUT_BATCH,
            "clients_per_round": None,
            "rounds": rounds,
            "eval_every": rounds,
        },
        "zo": {"eps": 1.0e-3, "mode": "fast", "generator": generator},
        "method": {"name": method, "params": params},
        "seed": opts.seed,
        "threads": opts.run_threads,
        "device": opts.device,
        "assets_dir": opts.assets_dir,
    }


def tree_config(tree: Tree) -> dict[str, Any]:
    config_path = tree.root / "config" / "config.yaml"
    try:
        return yaml.safe_load(config_path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise MeasureFailed(f"cannot read {config_path}: {e}") from None


def startup_config(opts: BenchOptions, tree: Tree) -> dict[str, Any]:
    """The tree's own default FeedSign run (config/config.yaml: run_defaults, the feedsign block), on the
    bench's model, for 1 round with evaluation after it."""
    from zofo.grid.study import deep_merge

    config = tree_config(tree)
    block = (config.get("methods") or {}).get("feedsign") or {}
    cfg = deep_merge(config.get("run_defaults") or {}, block)
    return deep_merge(
        cfg,
        {
            "model": {"name": opts.pipeline_model},
            "federation": {"rounds": 1, "eval_every": 1},
            "method": {"name": "feedsign"},
            "seed": opts.seed,
            "threads": opts.run_threads,
            "assets_dir": opts.assets_dir,
        },
    )


def with_tree_zo(cfg: Mapping[str, Any], tree: Tree) -> dict[str, Any]:
    """A throughput config with the ZO settings of the tree's own default study (run_defaults' zo
    section: e.g. batched clients where the tree has them), its generator aside: each row names its
    own. Keys a tree does not know never reach it, so the same row runs on every revision."""
    try:
        own = (tree_config(tree).get("run_defaults") or {}).get("zo") or {}
    except MeasureFailed:
        own = {}
    zo = {**cfg["zo"], **{k: v for k, v in own.items() if k != "generator"}}
    return {**cfg, "zo": {**zo, "generator": cfg["zo"]["generator"]}}


def default_generator(tree: Tree, info: Mapping[str, Any]) -> str | None:
    """The zo.generator of the tree's default config: run_defaults' when it names one, else the
    RunConfig default the tree itself reports."""
    try:
        zo = (tree_config(tree).get("run_defaults") or {}).get("zo") or {}
    except MeasureFailed:
        zo = {}
    return zo.get("generator") or info.get("default_generator")


# -- the sections ------------------------------------------------------------------------------------


class Pipeline:
    """The three sections over the trees, writing rows through ``rows``."""

    def __init__(self, rows: Rows, tree_list: Sequence[Tree], work: Path):
        self.rows, self.opts, self.trees, self.work = rows, rows.opts, list(tree_list), work
        self._info: dict[str, dict[str, Any]] = {}
        # (variant, layers) -> tree -> the shares of its profiled run
        self._shares: dict[tuple[str, str], dict[str, dict[str, float]]] = {}
        self._count = 0

    def folder(self, label: str) -> Path:
        self._count += 1
        path = self.work / f"{self._count:03d}-{label}"
        path.mkdir(parents=True)
        return path

    def info(self, tree: Tree) -> dict[str, Any]:
        """One ``probe.py info`` process: the import time and the default generator."""
        d = self.folder(f"info-{tree.name}")
        run_timed(probe_command("info", str(d / "info.json")), tree, d)
        try:
            out = json.loads((d / "info.json").read_text())
        except (OSError, ValueError) as e:
            raise MeasureFailed(f"probe wrote no info: {e}") from None
        self._info.setdefault(tree.name, out)
        return out

    def cached_info(self, tree: Tree) -> dict[str, Any] | None:
        if tree.name not in self._info:
            try:
                self.info(tree)
            except MeasureFailed as e:
                log(f"{tree.name}: no tree info: {e}")
                return None
        return self._info[tree.name]

    def add(
        self,
        measure: str,
        samples: Samples,
        value: Callable[[list[Any]], float],
        *,
        model: str = "-",
        params: int = 0,
        shape: str = "-",
        clients: int | None = None,
        layers: str = "",
        seconds: Mapping[str, float] | None = None,
        items: Mapping[str, float] | None = None,
        shares: Mapping[str, Mapping[str, float]] | None = None,
        note: str = "",
        notes: Mapping[str, str] | None = None,
    ) -> None:
        """One row per tree from its samples (``value``: the row's number, by default also its seconds; a
        failed tree's row says why); the current tree's row also has the ratio to the baseline's."""
        values = {t.name: value(samples.values[t.name]) for t in self.trees if samples.ok(t.name)}
        for t in self.trees:
            name = t.name
            common: dict[str, Any] = {
                "clients": clients,
                "tree": name,
                "layers": layers,
                "threads": self.opts.run_threads,
            }
            if name not in values:
                why = samples.failed.get(name, "no value")
                self.rows.add(model, params, shape, measure, repeats=0, note=f"failed: {why}", **common)
                continue
            ref = values.get(BASELINE)
            of = {f"{measure}@{BASELINE}": ref} if name == CURRENT and ref is not None else None
            self.rows.add(
                model,
                params,
                shape,
                measure,
                seconds=(seconds or {}).get(name, values[name]),
                items=(items or {}).get(name, math.nan),
                value=values[name],
                of=of,
                repeats=len(samples.values[name]),
                shares=(shares or {}).get(name),
                note=join(note, (notes or {}).get(name, "")),
                **common,
            )

    # -- startup --

    def startup(self) -> None:
        opts = self.opts

        params: dict[str, int] = {}
        layers: dict[str, str] = {}

        def one_run(tree: Tree, i: int) -> tuple[float, float]:
            d = self.folder(f"startup-{tree.name}")
            cfg_path = d / "run.yaml"
            cfg = startup_config(opts, tree)
            layers.setdefault(tree.name, format_layers((cfg.get("model") or {}).get("layers")))
            cfg_path.write_text(yaml.safe_dump(cfg))
            wall = run_timed(zofo_run_command(cfg_path, d / "run"), tree, d)
            rows, meta = read_run(d / "run")
            params.setdefault(tree.name, int(meta["model"]["parameters"]))
            later_eval = sum(float(r["eval_seconds"]) for r in rows if r["round"] >= 1)
            fixed = wall - training_seconds(rows) - later_eval
            log(f"startup {tree.name} {'warm-up' if i < 0 else i}: wall {wall:.2f} s, fixed {fixed:.2f} s")
            return fixed, float(rows[0]["eval_seconds"])

        runs = interleaved(self.trees, one_run, opts.pipeline_repeats, opts.pipeline_warmup)
        common: dict[str, Any] = {
            "model": opts.pipeline_model,
            "params": next(iter(params.values()), 0),
            "layers": next(iter(layers.values()), ""),
        }
        self.add(
            "startup_fixed",
            runs,
            lambda v: median([x[0] for x in v]),
            note="wall of a 1-round `zofo run` of the default FeedSign config minus its training and the "
            "evaluation after it (the round-0 evaluation included)",
            **common,
        )
        self.add("startup_eval0", runs, lambda v: median([x[1] for x in v]), **common)

        def one_import(tree: Tree, i: int) -> float:
            seconds = float(self.info(tree)["import_seconds"])
            log(f"import zofo.engine.loop {tree.name} {'warm-up' if i < 0 else i}: {seconds:.2f} s")
            return seconds

        imports = interleaved(self.trees, one_import, opts.pipeline_repeats, opts.pipeline_warmup)
        self.add("import_engine_loop", imports, median)

    # -- dag --

    def dag(self) -> None:
        exe = shutil.which(DAG_COMMAND[0])
        if exe is None:
            line = "snakemake is not on PATH: the DAG build was not timed"
            log(line)
            for t in self.trees:
                self.rows.add("-", 0, "-", "dag_dry_run", tree=t.name, repeats=0, note=f"failed: {line}")
            return

        def one(tree: Tree, i: int) -> float:
            if not (tree.root / "Snakefile").is_file():
                raise MeasureFailed(f"no Snakefile in {tree.root}")
            seconds = run_timed([exe, *DAG_COMMAND[1:]], tree, tree.root)
            log(f"dag {tree.name} {'warm-up' if i < 0 else i}: {seconds:.2f} s")
            return seconds

        samples = interleaved(self.trees, one, self.opts.pipeline_repeats, self.opts.pipeline_warmup)
        note = f"`{' '.join(DAG_COMMAND)}` in the tree's folder (its Snakefile, config/config.yaml)"
        self.add("dag_dry_run", samples, median, note=note)

    # -- throughput --

    def throughput(self) -> None:
        generators = {t.name: default_generator(t, self.cached_info(t) or {}) for t in self.trees}
        for layers in self.opts.throughput_layers:
            measured = {v: self.throughput_one(v, layers) for v in self.opts.throughput_methods}
            self.feedsign_default(layers, measured, generators)

    def throughput_one(self, variant: str, layers: int | None) -> Samples:
        """The rows of one method and size; returns its samples ((seconds, estimates) per timed run)."""
        opts = self.opts
        cfg = throughput_config(opts, variant, layers)
        size = format_layers(layers)
        params: dict[str, int] = {}

        def start(tree: Tree, label: str) -> tuple[Path, Path]:
            d = self.folder(f"{variant}-L{size}-{tree.name}-{label}")
            (d / "run.yaml").write_text(yaml.safe_dump(with_tree_zo(cfg, tree)))
            return d, d / "run.yaml"

        # The profiled runs come first: they are also each tree's untimed run (page cache, bytecode).
        profiles: dict[str, ProfileSplit] = {}
        notes: dict[str, str] = {}
        for t in self.trees:
            d, cfg_path = start(t, "profile")
            cli_args = zofo_run_command(cfg_path, d / "run")[3:]  # past `python -m zofo.cli`
            try:
                run_timed(probe_command("profile", str(d / "profile.pstats"), *cli_args), t, d)
                read_run(d / "run")
                profiles[t.name] = read_profile(d / "profile.pstats")
            except (MeasureFailed, OSError, ValueError, EOFError, TypeError) as e:
                notes[t.name] = f"no profile: {e}"
                log(f"throughput {variant} layers {size} {t.name}: no profile: {e}")

        def one(tree: Tree, i: int) -> tuple[float, int]:
            d, cfg_path = start(tree, f"run{i}")
            run_timed(zofo_run_command(cfg_path, d / "run"), tree, d)
            rows, meta = read_run(d / "run")
            params.setdefault(tree.name, int(meta["model"]["parameters"]))
            seconds, estimates = training_seconds(rows), int(rows[-1]["local_steps_total"])
            log(f"throughput {variant} layers {size} {tree.name} {i}: {estimates / seconds:.4g} estimates/s")
            return seconds, estimates

        samples = interleaved(self.trees, one, opts.pipeline_repeats, warmup=0)
        shares = self._shares[(variant, size)] = {name: split.shares() for name, split in profiles.items()}
        self.add_throughput(
            f"throughput_{variant}",
            samples,
            layers=size,
            params=next(iter(params.values()), 0),
            shares=shares,
            note=f"zo.generator {THROUGHPUT_RUNS[variant][1]}",
            notes=notes,
        )
        return samples

    def add_throughput(self, measure: str, samples: Samples, **kw: Any) -> None:
        """Rows of (seconds, estimates) samples: estimates per second (the median over the timed runs) as
        the value and ratio, the median training seconds and the estimates of one run."""
        ok = {name: v for name, v in samples.values.items() if samples.ok(name)}
        self.add(
            measure,
            samples,
            # estimates / the median seconds: the rate the seconds and estimates columns give
            lambda v: v[0][1] / median([s for s, _ in v]),
            model=self.opts.pipeline_model,
            shape=f"{THROUGHPUT_BATCH}x{THROUGHPUT_TOKENS}",
            clients=THROUGHPUT_CLIENTS,
            seconds={name: median([s for s, _ in v]) for name, v in ok.items()},
            items={name: float(v[0][1]) for name, v in ok.items()},
            **kw,
        )

    def feedsign_default(
        self, layers: int | None, measured: Mapping[str, Samples], generators: Mapping[str, str | None]
    ) -> None:
        """``throughput_feedsign_default``: each tree's FeedSign under the generator of its own default
        config, the current tree's against the baseline's (old default against new default)."""
        chosen = Samples({})
        notes: dict[str, str] = {}
        shares: dict[str, dict[str, float]] = {}
        for t in self.trees:
            gen = generators.get(t.name)
            variant = FEEDSIGN_BY_GENERATOR.get(gen or "")
            if variant is None or variant not in measured:
                chosen.failed[t.name] = (
                    "the default generator is unknown"
                    if variant is None
                    else f"throughput_{variant} (its default, zo.generator {gen}) was not measured"
                )
                continue
            source = measured[variant]
            chosen.values[t.name] = source.values.get(t.name, [])
            if t.name in self._shares.get((variant, format_layers(layers)), {}):
                shares[t.name] = self._shares[(variant, format_layers(layers))][t.name]
            if t.name in source.failed:
                chosen.failed[t.name] = source.failed[t.name]
            notes[t.name] = f"= throughput_{variant}: the default config's zo.generator is {gen}"
        if not any(chosen.ok(t.name) for t in self.trees):
            return
        self.add_throughput(
            "throughput_feedsign_default", chosen, layers=format_layers(layers), shares=shares, notes=notes
        )


def run_pipeline(rows: Rows) -> None:
    """The pipeline sections asked for, after one ``tree`` row per tree saying what it is (and, without
    a baseline, a baseline row saying why)."""
    opts = rows.opts
    with tempfile.TemporaryDirectory(prefix="zofo-bench-") as tmp:
        work = Path(tmp)
        tree_list, line = make_trees(opts, work)
        for t in tree_list:
            rows.add("-", 0, "-", "tree", tree=t.name, repeats=0, note=t.description)
        if len(tree_list) == 1:
            rows.add("-", 0, "-", "tree", tree=BASELINE, repeats=0, note=line)
        (work / "runs").mkdir()
        p = Pipeline(rows, tree_list, work / "runs")
        if "startup" in opts.run_sections:
            p.startup()
        if "dag" in opts.run_sections:
            p.dag()
        if "throughput" in opts.run_sections:
            p.throughput()
