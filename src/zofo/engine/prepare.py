"""What a run starts from before any method is involved: the task, the model and its objective, the
encoded data, the clients' shards, and the columns every row of the run repeats. A method written as
a workflow rule starts here too, so it sees the same partition, data and batches as the engine's."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch

from zofo.assets.models import load_model
from zofo.assets.objectives import Objective, build_objective
from zofo.assets.tasks.base import SPLIT_SEED, check_label_ids
from zofo.core.config import RunConfig
from zofo.core.device import resolve_device, torch_dtype
from zofo.core.errors import ConfigError
from zofo.core.registry import TASKS
from zofo.core.seeds import numpy_rng
from zofo.engine.data import EncodedSplit, encoded_split
from zofo.engine.partition import partition

datasets.disable_progress_bars()  # tokenising a few thousand rows: the round bar is the one that matters


@dataclasses.dataclass
class Prepared:
    """What every run of a config starts from, before any method is involved: the task, the model and
    its objective, the encoded training and evaluation data, and the clients' shards."""

    task: Any
    loaded: Any
    objective: Objective
    train: EncodedSplit
    eval_data: EncodedSplit
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
    # Any task's labels, before one indexes a histogram or a loss (a registered task is checked too).
    key = "task.label_column" if cfg.task.name == "hub-classification" else "task.name"
    for name, split in task.splits.items():
        check_label_ids(split["label"], task.label_names, key, f"the {name} split of {cfg.task.name}")
    device = resolve_device(cfg.device)
    loaded = load_model(cfg.model, cfg.assets_dir, seed=cfg.seed, device=device, dtype=torch_dtype(cfg.dtype))
    objective = build_objective(loaded, task, cfg.task)
    # Encoded once per (task, tokenizer, token budget) and kept with the converted weights.
    cache = Path(cfg.assets_dir) / "encoded" if cfg.assets_dir else None
    train = encoded_split(objective, task.splits["train"], cache)
    eval_split = task.splits[cfg.task.eval_split].shuffle(seed=SPLIT_SEED)
    if cfg.task.eval_max_examples is not None:
        eval_split = eval_split.select(range(min(cfg.task.eval_max_examples, len(eval_split))))
    eval_data = encoded_split(objective, eval_split, cache)
    check_token_budget(cfg, loaded, task.kind, train, eval_data)
    if cfg.partition.key not in train.column_names:
        raise ConfigError("partition.key", cfg.partition.key, f"a column of the task: {train.column_names}")
    shards = partition(
        train["label"], train[cfg.partition.key], cfg.partition, numpy_rng(cfg.seed, "partition")
    )
    check_batch_size(cfg, shards)
    # The scorer travels with every number: the two Rouge-L scorers disagree on the same text.
    scorer = f"rouge_l/{cfg.task.rouge_scorer}" if task.kind == "generation" else "accuracy"
    return Prepared(task, loaded, objective, train, eval_data, shards, scorer, device)


def model_positions(model: torch.nn.Module) -> int | None:
    """The positions a model's config declares (its longest sequence), or None where it declares none."""
    config = getattr(model, "config", None)
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_token_budget(cfg: RunConfig, loaded: Any, kind: str, *splits: Any) -> None:
    """Refuse a token budget whose sequences outgrow the model's positions: an encoder with absolute
    positions fails inside its embeddings, and a rotary decoder would compute far outside the lengths
    it was trained on. Measured on the encoded data: the longest prompt (with its template and special
    tokens), and for generation tasks prompt + response and prompt + ``max_new_tokens``."""
    positions = model_positions(loaded.model)
    if positions is None:
        return
    longest_prompt = longest_total = 0
    for ds in splits:
        if len(ds) == 0:
            continue
        if kind == "generation":
            prompts = [len(x) for x in ds["prompt_ids"]]
            longest_prompt = max(longest_prompt, *prompts)
            with_response = (
                len(p) + len(r) for p, r in zip(ds["prompt_ids"], ds["response_ids"], strict=True)
            )
            longest_total = max(longest_total, *with_response, max(prompts) + cfg.task.max_new_tokens)
        else:
            longest_prompt = max(longest_prompt, *(len(x) for x in ds["input_ids"]))
    longest_total = max(longest_total, longest_prompt)
    where = f"{cfg.model.name} has {positions} positions (max_position_embeddings)"
    if longest_prompt > positions:
        k = cfg.task.max_input_tokens
        room = k - (longest_prompt - positions)
        allowed = f"at most {room}" if room >= 1 else "a smaller budget"
        raise ConfigError(
            "task.max_input_tokens",
            k,
            f"{allowed}: the longest prompt is {longest_prompt} tokens and {where}",
        )
    if longest_total > positions:
        n = cfg.task.max_new_tokens
        room = n - (longest_total - positions)
        allowed = (
            f"at most {room}, or a lower task.max_input_tokens"
            if room >= 1
            else "a lower task.max_input_tokens"
        )
        raise ConfigError(
            "task.max_new_tokens",
            n,
            f"{allowed}: a prompt with its response reaches {longest_total} tokens and {where}",
        )


def check_batch_size(cfg: RunConfig, shards: Sequence[Sequence[int]]) -> None:
    """Refuse a client batch larger than the smallest client's data. Such a client's every batch would
    be its whole shard, smaller than the batch the config names: the steps of different clients would
    average different numbers of examples while the record says they all used ``batch_size``."""
    sizes = [len(s) for s in shards]
    smallest = min(sizes)
    if cfg.federation.batch_size > smallest:
        raise ConfigError(
            "federation.batch_size",
            cfg.federation.batch_size,
            f"at most {smallest}, the training examples of the smallest client (client "
            f"{sizes.index(smallest)} of {len(sizes)}); lower federation.batch_size or raise "
            "partition.min_size",
        )


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
            yield objective.collate(
                data.rows(idx) if isinstance(data, EncodedSplit) else data.select(idx.tolist())
            )


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


def recording_losses(
    objective: Objective, sink: list[float]
) -> Callable[[Sequence[Mapping[str, torch.Tensor]]], list[torch.Tensor]]:
    """The objective's batched ``losses``, appending every value to ``sink`` as ``recording_loss`` does."""

    def losses(batches: Sequence[Mapping[str, torch.Tensor]]) -> list[torch.Tensor]:
        values = objective.losses(batches)
        sink.extend(float(v.detach()) for v in values)
        return values

    return losses


def recording_loss(
    objective: Objective, sink: list[float]
) -> Callable[[Mapping[str, torch.Tensor]], torch.Tensor]:
    """The objective's loss, appending every value it computes to ``sink`` (a round's train_loss is
    the mean of what its clients computed)."""

    def loss(batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        value = objective.loss(batch)
        sink.append(float(value.detach()))
        return value

    return loss
