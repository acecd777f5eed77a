"""``zofo bench``: what a seeded ZO step costs, measured as ratios taken in one process and one run.

Absolute seconds depend on the machine and on whatever else runs on it; a ratio of two timings taken
minutes apart in the same process, with the same threads, model and batch, mostly does not. So every
timing here has a reference timed in the same run, and the summary quotes ratios. Sections
(``--sections``; each module's docstring says what its rows mean):

- ``packaged`` (``zofo.bench.packaged``, CPU): a-f on the packaged models and random-init Llamas: the
  ZO step against its two forward passes, a MeZO-style reference step, FeedSign's clients sharing z,
  peak memory in child processes, FedKSeed's server update, growth with width and clients.
- ``generators`` (``zofo.bench.generators``): normals per second of the portable generator
  (``zofo.core.philox``) and torch's own, and the bytes they write against a device-to-device copy.
- ``sizes`` (``zofo.bench.sizes``): OPT-shaped decoders from 125M to 30B parameters on one device
  (``--device cuda``): ZO step against two forwards, ZO and first-order peak memory against inference,
  FedKSeed's server update.
- ``drift`` (``zofo.bench.drift``, ``--drift``): what stock seeded ``torch.randn`` does to a shared-seed
  method when client and server draw on different hardware, against the portable generator.
- ``startup``, ``dag``, ``throughput`` (``zofo.bench.pipeline``; only when named): whole ``zofo`` processes
  of the current code against a baseline revision (``--baseline``), interleaved in the same run: a run's
  fixed cost before its first training step, the workflow's DAG build, and two-point estimates per
  second of training for each ZO method with the split of that time.

Timing: the median of ``repeats`` calls after one warm-up, with CUDA events on a GPU and
``time.perf_counter`` on the CPU; every call uses a new step seed, so fast mode never finds a previous
call's z in its cache. Nothing global changes: the thread count is put back, models are built inside
``fork_rng``, and the reference step restores the global RNG state.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from zofo.bench.common import CSV_COLUMNS, RANDOM_NOTE, Rows, log, median_time
from zofo.bench.fed import EPS, LR, forward_pair, mezo_reference_step, zo_step
from zofo.bench.models import (
    LOSS_TEXT,
    BenchModel,
    load_bench_model,
    make_batch,
    make_loss,
    opt_config,
    opt_parameters,
)
from zofo.bench.options import (
    DEFAULT_MODELS,
    OPT_SIZES,
    QUICK,
    BenchOptions,
    add_arguments,
    check_model,
    options_from_args,
)
from zofo.bench.packaged import MEMORY_KINDS, child_run, run_child
from zofo.bench.report import GOAL_MODEL, GOALS, goals_table, summary_markdown, write_outputs
from zofo.core.errors import ConfigError, ZofoError

__all__ = [
    "CSV_COLUMNS",
    "DEFAULT_MODELS",
    "EPS",
    "GOALS",
    "GOAL_MODEL",
    "LOSS_TEXT",
    "LR",
    "MEMORY_KINDS",
    "OPT_SIZES",
    "QUICK",
    "RANDOM_NOTE",
    "BenchModel",
    "BenchOptions",
    "Rows",
    "add_arguments",
    "bench",
    "check_model",
    "child_run",
    "forward_pair",
    "goals_table",
    "load_bench_model",
    "main",
    "make_batch",
    "make_loss",
    "median_time",
    "mezo_reference_step",
    "opt_config",
    "opt_parameters",
    "options_from_args",
    "run_bench",
    "run_child",
    "summary_markdown",
    "write_outputs",
    "zo_step",
]


def check_device(opts: BenchOptions) -> None:
    if opts.on_cuda and not torch.cuda.is_available():
        raise ConfigError("--device", opts.device, "cpu here: torch.cuda.is_available() is False")


def run_bench(opts: BenchOptions) -> pd.DataFrame:
    """Every measurement of the sections asked for (drift aside) in this process; returns the CSV rows."""
    from zofo.bench.generators import run_generators
    from zofo.bench.options import PIPELINE_SECTIONS
    from zofo.bench.packaged import run_packaged
    from zofo.bench.pipeline import run_pipeline
    from zofo.bench.sizes import Sizes

    check_device(opts)
    rows = Rows(opts)
    sections = opts.run_sections
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(opts.threads)
    try:
        if "packaged" in sections:
            run_packaged(rows)
        rates = run_generators(rows) if "generators" in sections or "sizes" in sections else {}
        if "sizes" in sections:
            Sizes(rows, rates).run()
        if any(s in sections for s in PIPELINE_SECTIONS):
            run_pipeline(rows)
    finally:
        torch.set_num_threads(previous_threads)
    return rows.frame()


def bench(opts: BenchOptions, out_dir: str | Path, figures_dir: str | Path) -> str:
    """Run the sections asked for and write their outputs; returns the Markdown printed."""
    check_device(opts)
    parts = []
    if any(s != "drift" for s in opts.run_sections):
        df = run_bench(opts)
        md, _ = write_outputs(df, opts, out_dir, figures_dir)
        parts.append(md)
    if "drift" in opts.run_sections:
        from zofo.bench.drift import run_drift

        parts.append(run_drift(opts, out_dir))
    log("done")
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m zofo.bench``: a memory child with ``--child``, a drift party with ``--party``, else
    the same as ``zofo bench``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a == "--child" or a.startswith("--child=") for a in args):
        from zofo.bench.packaged import child_main

        return child_main(args)
    if any(a == "--party" or a.startswith("--party=") for a in args):
        from zofo.bench.drift import party_main

        return party_main(args)
    parser = argparse.ArgumentParser(prog="zofo bench", description=DESCRIPTION)
    add_arguments(parser)
    try:
        return run_from_args(parser.parse_args(args))
    except ZofoError as e:
        print(f"zofo: error: {e}", file=sys.stderr)
        return 2


DESCRIPTION = (
    "Every measurement in one run (in one process, except sections startup, dag and throughput, which "
    "time whole zofo processes of the current code and of --baseline, interleaved); writes "
    "OUT/bench.csv, OUT/bench.md (also printed) and FIGURES/scaling.{png,pdf}. Quote the ratios, not "
    "the seconds."
)


def run_from_args(args: argparse.Namespace) -> int:
    """``zofo bench`` once its arguments are parsed: every value is checked before anything is timed."""
    opts = options_from_args(args)
    print(bench(opts, args.out, args.figures), end="")
    return 0
