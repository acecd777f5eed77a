"""How a model is trained and scored on a task: the loss a method optimises and the evaluation.

- causal LM x classification: MeZO's prompt approach. The prompt ends where the label word should
  follow; the loss is the cross-entropy over the label words' next-token logits, and the prediction is
  the best-scoring label word. The pretrained LM already ranks the words sensibly, so ZO improves from
  step 0 instead of having to learn a random head.
- encoder x classification: mean-pooled, normalised sentence embedding times a head whose rows start
  as the (normalised) embeddings of the label names: a zero-shot cosine classifier to start from.
- causal LM x generation: the loss is the next-token cross-entropy on the response tokens only; the
  score is Rouge-L of greedy decoding (see ``zofo.objectives_generation``).

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

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import datasets
import torch
import torch.nn.functional as F
from torch import nn

from zofo.config import TaskConfig
from zofo.errors import ConfigError
from zofo.metrics import load_metric
from zofo.models import LoadedModel
from zofo.tasks.base import TaskData

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

    def collate(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def loss(self, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

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


class LabelWordObjective(Objective):
    """Causal LM classification by label-word scoring (MeZO's prompts)."""

    def __init__(self, model: nn.Module, tokenizer: Any, task: TaskData, cfg: TaskConfig):
        super().__init__(model, tokenizer, task, cfg)
        ids = [self._ids(" " + w) for w in task.label_words]
        first = [i[0] for i in ids]
        if len(set(first)) != len(first):
            raise ConfigError(
                "task.label_words",
                list(task.label_words),
                "words whose first tokens differ for this tokenizer (they are scored by their first token)",
            )
        self.label_token_ids = torch.tensor(first, device=self.device)
        pre, _, post = task.prompt.partition("{text}")
        self._pre, self._post = self._ids(pre), self._ids(post)

    def encode_split(self, ds: datasets.Dataset) -> datasets.Dataset:
        k = self.cfg.max_input_tokens

        def enc(row: Mapping[str, Any]) -> dict[str, Any]:
            return {"input_ids": self._pre + self._ids(clip(row["text"], k))[:k] + self._post}

        return encode_rows(ds, enc, f"{type(self).__name__}-{k}")

    def collate(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        batch = left_pad([r["input_ids"] for r in rows], self.pad_id)
        batch["labels"] = torch.tensor([r["label"] for r in rows], dtype=torch.long)
        return batch

    def scores(self, batch: Batch) -> torch.Tensor:
        batch = self.on_device(batch)
        out = self.model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            position_ids=batch["position_ids"],
            logits_to_keep=1,  # only the last position is scored: skips the LM head elsewhere
        )
        # float32 scores whatever the model's dtype: the loss is computed in float32.
        return out.logits[:, -1, :].index_select(-1, self.label_token_ids).float()

    def loss(self, batch: Batch) -> torch.Tensor:
        batch = self.on_device(batch)
        return F.cross_entropy(self.scores(batch), batch["labels"])

    @torch.no_grad()
    def evaluate(self, ds: datasets.Dataset) -> dict[str, float]:
        was_training = self.model.training
        self.model.eval()
        preds, refs, total_loss = [], [], 0.0
        bs = self.cfg.eval_batch_size
        for start in range(0, len(ds), bs):
            batch = self.on_device(self.collate(ds.select(range(start, min(start + bs, len(ds))))))
            s = self.scores(batch)
            total_loss += F.cross_entropy(s, batch["labels"], reduction="sum").item()
            preds += s.argmax(-1).tolist()
            refs += batch["labels"].tolist()
        self.model.train(was_training)
        acc = load_metric("accuracy").compute(predictions=preds, references=refs)["accuracy"]
        return {"metric": acc, "eval_loss": total_loss / len(ds)}


class EncoderClassifier(nn.Module):
    """Encoder + cosine head whose rows start as the embeddings of the label names."""

    def __init__(self, encoder: nn.Module, label_embeddings: torch.Tensor, scale: float = 20.0):
        super().__init__()
        self.encoder = encoder
        # The head is part of the model: same device and dtype as the embeddings it starts from.
        self.head = nn.Linear(
            label_embeddings.shape[1],
            label_embeddings.shape[0],
            device=label_embeddings.device,
            dtype=label_embeddings.dtype,
        )
        with torch.no_grad():
            self.head.weight.copy_(scale * F.normalize(label_embeddings, dim=-1))
            self.head.bias.zero_()

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        # Pooled and normalised in float32 (a no-op for a float32 model): a bf16 sum over the tokens
        # would round at every token; the result goes back to the head's dtype.
        m = attention_mask.unsqueeze(-1).float()
        pooled = F.normalize((hidden.float() * m).sum(1) / m.sum(1).clamp(min=1.0), dim=-1)
        return pooled.to(hidden.dtype)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(input_ids, attention_mask))


class EncoderHeadObjective(LabelWordObjective):
    """Encoder classification; shares tokenisation, batching and evaluation with label-word scoring."""

    def __init__(self, model: nn.Module, tokenizer: Any, task: TaskData, cfg: TaskConfig):
        Objective.__init__(self, model, tokenizer, task, cfg)
        with torch.no_grad():
            enc = self.on_device(tokenizer(list(task.label_names), padding=True, return_tensors="pt"))
            wrapper = EncoderClassifier(model, torch.zeros(len(task.label_names), model.config.hidden_size))
            label_emb = wrapper.embed(enc["input_ids"], enc["attention_mask"])
        self.model = EncoderClassifier(model, label_emb)
        self._pre, self._post = [], []
        self.cls_id = tokenizer.cls_token_id
        self.sep_id = tokenizer.sep_token_id

    def encode_split(self, ds: datasets.Dataset) -> datasets.Dataset:
        k = self.cfg.max_input_tokens
        special = [self.cls_id] if self.cls_id is not None else []
        end = [self.sep_id] if self.sep_id is not None else []
        return encode_rows(
            ds,
            lambda row: {"input_ids": special + self._ids(clip(row["text"], k))[:k] + end},
            f"{type(self).__name__}-{k}",
        )

    def collate(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        # Right padding: BERT-style absolute positions must start at the first real token.
        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r["input_ids"])] = torch.tensor(r["input_ids"])
            mask[i, : len(r["input_ids"])] = 1
        labels = torch.tensor([r["label"] for r in rows], dtype=torch.long)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    def scores(self, batch: Batch) -> torch.Tensor:
        batch = self.on_device(batch)
        # float32 scores whatever the model's dtype: the loss is computed in float32.
        return self.model(batch["input_ids"], batch["attention_mask"]).float()


def encode_rows(
    ds: datasets.Dataset, fn: Callable[[Mapping[str, Any]], dict[str, Any]], name: str
) -> datasets.Dataset:
    """``ds.map(fn)`` in memory, uncached. The fingerprint is given (``name``): otherwise datasets
    hashes ``fn`` with the tokenizer it closes over, which took seconds of every run's start-up."""
    return ds.map(fn, load_from_cache_file=False, keep_in_memory=True, new_fingerprint=f"zofo-{name}")


def build_objective(loaded: LoadedModel, task: TaskData, cfg: TaskConfig) -> Objective:
    if task.kind == "classification":
        cls = LabelWordObjective if loaded.kind == "causal-lm" else EncoderHeadObjective
        return cls(loaded.model, loaded.tokenizer, task, cfg)
    if loaded.kind != "causal-lm":
        raise ConfigError("model.name", loaded.source, "a causal LM for a generation task")
    from zofo.objectives_generation import GenerationObjective

    return GenerationObjective(loaded.model, loaded.tokenizer, task, cfg)
