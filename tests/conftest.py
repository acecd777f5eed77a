"""Shared fixtures: a tiny random Llama, an independent z oracle and a tiny end-to-end run config."""

from __future__ import annotations

import copy
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import json  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable, Iterator, Mapping  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from zofo.assets.models import LoadedModel, load_model  # noqa: E402
from zofo.core.config import ModelConfig  # noqa: E402
from zofo.core.registry import METHODS  # noqa: E402
from zofo.grid.study import RUN_DIR  # noqa: E402
from zofo.methods.base import params_for_tests  # noqa: E402

# The restore tolerance of perturb(+1), perturb(-2), perturb(+1) in fp32 with |w| <= ~1 and eps 1e-3:
# each add_ rounds to half an ulp of max(|w|, 2 eps |z|) <= ~1, i.e. ~6e-8; four roundings stay below
# 1e-6 with room to spare, while a missing or wrong-sign step moves a weight by eps |z| ~ 1e-3.
ZO_RESTORE_ATOL = 1e-6


class _TestParams(Mapping[str, dict[str, Any]]):
    """Method name -> the Params overrides that keep its tiny-llama run to seconds, as its class declares
    them (``test_params``: defaults such as FedKSeed's 200 local steps or a full one-shot epoch take
    minutes). Read on use, so a method that declares none fails the tests that run it, naming what it
    lacks, instead of every module's collection."""

    def __getitem__(self, name: str) -> dict[str, Any]:
        return params_for_tests(METHODS.get(name))

    def __iter__(self) -> Iterator[str]:
        return iter(METHODS.names())

    def __len__(self) -> int:
        return len(METHODS.names())


SMALL: Mapping[str, dict[str, Any]] = _TestParams()


def devices() -> list[str]:
    """The devices device-parametrised tests run on: the CPU always, CUDA where this machine has it."""
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def load_tiny_llama(seed: int = 0) -> LoadedModel:
    return load_model(ModelConfig(name="tiny-llama"), seed=seed)


@pytest.fixture
def tiny_llama() -> LoadedModel:
    """A fresh random-init 2-layer Llama (hidden 32, tied embeddings) per test: tests mutate it."""
    return load_tiny_llama()


def oracle_z(params: list[torch.Tensor], seed: int) -> list[torch.Tensor]:
    """z(seed) regenerated independently of zofo: one plain CPU generator, randn per parameter in order."""
    g = torch.Generator().manual_seed(int(seed))
    return [torch.randn(p.shape, generator=g, dtype=torch.float32) for p in params]


def unique_trainable(model: torch.nn.Module) -> list[torch.Tensor]:
    """Trainable tensors in named_parameters order, each shared tensor once (independent of zofo.core.zo)."""
    seen: set[int] = set()
    out = []
    for _, p in model.named_parameters(remove_duplicate=False):
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


def snapshot(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def max_abs_diff(model: torch.nn.Module, snap: list[torch.Tensor]) -> float:
    return max(float((p.detach() - s).abs().max()) for p, s in zip(model.parameters(), snap, strict=True))


def deep_update(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = deep_update(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


TINY_RUN: dict[str, Any] = {
    # The suite's bit-for-bit expectations are the CPU's; tests parametrised over devices() cover the
    # accelerators a machine has.
    "device": "cpu",
    "model": {"name": "tiny-llama"},
    "task": {"name": "bbc-news", "eval_max_examples": 16, "max_input_tokens": 8},
    "partition": {"name": "dirichlet", "num_clients": 3},
    "federation": {"rounds": 2, "batch_size": 2, "eval_every": 1},
    "seed": 0,
    "threads": 1,
}


def tiny_run_config(method: str, params: Mapping[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    """A RunConfig dict for a seconds-long engine run of ``method`` on tiny-llama + bbc-news."""
    data = deep_update(TINY_RUN, {"method": {"name": method, "params": dict(params or {})}})
    return deep_update(data, overrides)


@pytest.fixture
def run_config_dict() -> Callable[..., dict[str, Any]]:
    return tiny_run_config


ROOT = Path(__file__).resolve().parents[1]


def read_rows(run_dir: Path) -> list[dict[str, Any]]:
    """The rows of a run folder's rounds.jsonl, in order."""
    return [json.loads(x) for x in (run_dir / "rounds.jsonl").read_text().splitlines() if x.strip()]


# The environment of `snakemake` subprocesses: offline, and importing zofo from this checkout, even in
# job processes that start in another working directory (where a relative PYTHONPATH would miss it).
WORKFLOW_ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])),
}


def run_workflow(
    workdir: Path, configfile: Path, *extra: str, cores: str | None = "2"
) -> subprocess.CompletedProcess:
    """The project's Snakefile through the real `snakemake` command line, in ``workdir``, offline;
    fails the test with snakemake's stderr unless it exits 0. ``cores=None`` leaves ``--cores`` out,
    as commands that run no job (``--report``) are documented without it."""
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        *(["--cores", cores] if cores is not None else []),
        "--quiet",
        "rules",
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(configfile),
        *extra,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=540, env=WORKFLOW_ENV)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def dry_run(workdir: Path, configfile: Path, *extra: str) -> str:
    """``snakemake -n`` of the project's Snakefile with ``configfile`` in ``workdir``, offline; its
    output (the plan: one block per job, with its resources). Fails the test unless it exits 0."""
    cmd = [
        sys.executable, "-m", "snakemake", "-n", "--snakefile", str(ROOT / "Snakefile"),
        "--directory", str(workdir), "--configfile", str(configfile), *extra,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=WORKFLOW_ENV)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


def planned_runs(plan: str) -> dict[str, dict[str, str]]:
    """The jobs of rule ``run`` in a dry run's output: run folder -> its resources (name -> value as
    printed, e.g. ``{"gpu": "1", "mem_mb": "4000"}``)."""
    jobs: dict[str, dict[str, str]] = {}
    for block in plan.split("\nrule run:")[1:]:
        # The rule's wildcards are the parts of the folder (method, grid cell, seed).
        wildcards = re.search(r"^\s+wildcards: (.*)$", block, re.MULTILINE).group(1)
        run = RUN_DIR.format(**dict(re.findall(r"(\w+)=([^,]*)", wildcards)))
        line = re.search(r"^\s+resources: (.*)$", block, re.MULTILINE).group(1)
        jobs[run] = dict(item.split("=", 1) for item in line.split(", "))
    return jobs
