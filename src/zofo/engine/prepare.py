"""What a run starts from before any method is involved: the task, the model and its objective, the
encoded data, the clients' shards, and the columns every row of the run repeats. A method written as
a workflow rule starts here too, so it sees the same partition, data and batches as the engine's."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import datasets
import numpy as np
import torch

from zofo.assets.models import load_model
from zofo.assets.objectives import Objective, build_objective
from zofo.assets.tasks.base import SPLIT_SEED
from zofo.core.config import RunConfig
from zofo.core.device import resolve_device, torch_dtype
from zofo.core.errors import ConfigError
from zofo.core.registry import TASKS
from zofo.core.seeds import numpy_rng
from zofo.engine.partition import partition

datasets.disable_progress_bars()  # tokenising a few thousand rows: the round bar is the one that matters


@dataclasses.dataclass
class Prepared:
    """What every run of a config starts from, before any method is involved: the task, the model and
    its objective, the encoded training and evaluation data, and the clients' shards."""

    task: Any
    loaded: Any
    objective: Objective
    train: Any
    eval_data: Any
    shards: list[list[int]]
    scorer: str
    device: torch.device  # where the model, its batches and the decoded payloads live

    @property
    def model(self) -> torch.nn.Module:
        return self.objective.model


def prepare(cfg: RunConfig) -> Prepared:
    """Load and encode what a run of ``cfg`` needs; the same for every method with the same seed (a
    method written as a workflow rule starts here too, so it sees the same partition and data)."""
    task = TASKS.get(cfg.task.name, "task.name")(cfg.task)
    device = resolve_device(cfg.device)
    loaded = load_model(cfg.model, cfg.assets_dir, seed=cfg.seed, device=device, dtype=torch_dtype(cfg.dtype))
    objective = build_objective(loaded, task, cfg.task)
    train = objective.encode_split(task.splits["train"])
    eval_split = task.splits[cfg.task.eval_split].shuffle(seed=SPLIT_SEED)
    if cfg.task.eval_max_examples is not None:
        eval_split = eval_split.select(range(min(cfg.task.eval_max_examples, len(eval_split))))
    eval_data = objective.encode_split(eval_split)
    if cfg.partition.key not in train.column_names:
        raise ConfigError("partition.key", cfg.partition.key, f"a column of the task: {train.column_names}")
    shards = partition(
        train["label"], train[cfg.partition.key], cfg.partition, numpy_rng(cfg.seed, "partition")
    )
    # The scorer travels with every number: the two Rouge-L scorers disagree on the same text.
    scorer = f"rouge_l/{cfg.task.rouge_scorer}" if task.kind == "generation" else "accuracy"
    return Prepared(task, loaded, objective, train, eval_data, shards, scorer, device)


def client_batches(
    objective: Objective, data: Any, shard: Sequence[int], batch_size: int, rng: np.random.Generator
) -> Iterator[Mapping[str, torch.Tensor]]:
    """Endless batches from one shard: reshuffled at every pass, drawn from the client's own generator."""
    shard = np.asarray(shard)
    while True:
        order = shard[rng.permutation(len(shard))]
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            if len(idx) < batch_size and len(order) >= batch_size:
                break  # drop the ragged tail so every step sees a full batch
            yield objective.collate(data.select(idx.tolist()))


def row_base(cfg: RunConfig, method: str, family: str, prep: Prepared) -> dict[str, Any]:
    """The columns every row of a run repeats (ROUND_COLUMNS' identity part)."""
    return {
        "method": method,
        "family": family,
        # A model cut to its first blocks is another model: tables and figures must not pool it with
        # the full one.
        "model": cfg.model.name if cfg.model.layers is None else f"{cfg.model.name}:{cfg.model.layers}L",
        "task": cfg.task.name,
        "partition": cfg.partition.name,
        "alpha": cfg.partition.alpha if cfg.partition.name == "dirichlet" else math.inf,
        "num_clients": cfg.partition.num_clients,
        "byz_frac": cfg.byzantine.fraction,
        "attack": cfg.byzantine.attack,
        "aggregator": cfg.aggregator.name,
        "seed": cfg.seed,
        "metric_name": prep.task.metric,
        "scorer": prep.scorer,
        "label": cfg.label,
        "config_hash": cfg.hash(),
        "device": str(prep.device),
        "dtype": cfg.dtype,
    }
