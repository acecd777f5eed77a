"""What every objective shares: batching helpers and the ``Objective`` interface.

How a model is trained and scored on a task: the loss a method optimises and the evaluation.

- causal LM x classification: MeZO's prompt approach. The prompt ends where the label word should
  follow; the loss is the cross-entropy over the label words' next-token logits, and the prediction is
  the best-scoring label word. The pretrained LM already ranks the words sensibly, so ZO improves from
  step 0 instead of having to learn a random head.
- encoder x classification: mean-pooled, normalised sentence embedding times a head whose rows start
  as the (normalised) embeddings of the label names: a zero-shot cosine classifier to start from.
- causal LM x generation: the loss is the next-token cross-entropy on the response tokens only; the
  score is Rouge-L of greedy decoding (see ``zofo.assets.objectives.generation``).

Devices and precision. Batches are collated on the CPU and moved to the model's device here, in the
objective (``on_device``), the one place every loss and evaluation passes through. Whatever the
weights' dtype (the ``dtype`` key), scores and logits are upcast to float32 before the cross-entropy,
so losses, and a ZO estimate's l+ and l-, are float32 numbers.

A ZO estimate in reduced precision perturbs and restores in the weights' dtype: each of the three
``add_`` calls of perturb(+1), perturb(-2), perturb(+1) rounds once, to half an ulp of a value no larger
than |w| + 2 eps |z|, so a restored weight differs from the original by at most 1.5 ulp of
|w| + 2 eps |z| in that dtype (tested in bfloat16, where one ulp is 2^-7 to 2^-8 of the value; the
measured worst case is 1 ulp). The bound is per step and the drift is not corrected, so it accumulates
over steps like any rounding; and an update lr * g * z smaller than half an ulp of a weight leaves it
unchanged. The perturbation itself, eps |z| with eps = 1e-3, is several bfloat16 ulps of a weight of
magnitude 0.02 (a typical initialisation), so l+ and l- still differ; on weights near 1 (norm scales)
it is below half an ulp and those weights are not perturbed at all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import datasets
import torch
from torch import nn

from zofo.assets.tasks.base import TaskData
from zofo.core.config import TaskConfig

Batch = Mapping[str, torch.Tensor]


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Left padding keeps every prompt's last token at position -1, where the label word is scored."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
        mask[i, width - len(s) :] = 1
    # Positions count real tokens only, so a padded prompt is encoded exactly as an unpadded one.
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    return {"input_ids": ids, "attention_mask": mask, "position_ids": position_ids}


def join_batches(batches: Sequence[Batch], pad_id: int, side: str) -> dict[str, torch.Tensor]:
    """Collated batches stacked into one, padded to the widest on ``side`` ("left" or "right", as their
    collate pads): pad tokens are masked out, and a left-padded batch's pad positions get position 0,
    as ``left_pad`` gives them, so every row is encoded as in its own batch."""
    width = max(b["input_ids"].shape[1] for b in batches)
    fill = {"input_ids": pad_id, "attention_mask": 0, "position_ids": 0}
    out: dict[str, torch.Tensor] = {}
    for key in batches[0]:
        parts = []
        for b in batches:
            t = b[key]
            if key in fill and t.shape[1] < width:
                extra = (width - t.shape[1], 0) if side == "left" else (0, width - t.shape[1])
                t = torch.nn.functional.pad(t, extra, value=fill[key])
            parts.append(t)
        out[key] = torch.cat(parts)
    return out


def clip(text: str, max_tokens: int) -> str:
    """Cut the text well past ``max_tokens`` tokens before tokenising: articles run to thousands of
    tokens and only the first few dozen are kept (no tokenizer here averages over 16 chars/token)."""
    return text[: 16 * max_tokens + 16]


class Objective:
    """Tokenised splits, a collate function, the training loss and the evaluation of one model on one task."""

    metric_name: str = "accuracy"

    def __init__(self, model: nn.Module, tokenizer: Any, task: TaskData, cfg: TaskConfig):
        self.model = model
        self.tokenizer = tokenizer
        self.task = task
        self.cfg = cfg
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def encode_split(self, ds: datasets.Dataset) -> datasets.Dataset:
        raise NotImplementedError

    def encoding_key(self) -> dict[str, Any]:
        """What ``encode_split`` depends on besides the tokenizer and the rows (the key of the encoded
        data cache, ``zofo.engine.data``): the task config and what the task adds to every prompt. An
        objective whose encoding reads anything else adds it here."""
        return {
            "task_config": dataclasses.asdict(self.cfg),
            "prompt": self.task.prompt,
            "label_words": list(self.task.label_words),
            "label_names": list(self.task.label_names),
            "kind": self.task.kind,
            "pad_id": self.pad_id,
        }

    def collate(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def loss(self, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def losses(self, batches: Sequence[Batch]) -> list[torch.Tensor]:
        """Each batch's loss on the current weights, as ``loss`` gives it. An objective that can stack
        batches of different sizes and widths into one forward overrides this (classification does);
        this fallback runs one forward per batch."""
        return [self.loss(b) for b in batches]

    def evaluate(self, ds: datasets.Dataset) -> dict[str, float]:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        """Where the model lives: batches are collated on the CPU and moved there by ``on_device``."""
        return next(self.model.parameters()).device

    def on_device(self, batch: Batch) -> Batch:
        """The batch on the model's device (the tensors themselves when they are there already)."""
        device = self.device
        return {k: v.to(device) for k, v in batch.items()}

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]


def encode_rows(
    ds: datasets.Dataset, fn: Callable[[Mapping[str, Any]], dict[str, Any]], name: str
) -> datasets.Dataset:
    """``ds.map(fn)`` in memory, uncached. The fingerprint is given (``name``): otherwise datasets
    hashes ``fn`` with the tokenizer it closes over, which took seconds of every run's start-up."""
    return ds.map(fn, load_from_cache_file=False, keep_in_memory=True, new_fingerprint=f"zofo-{name}")
