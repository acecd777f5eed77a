"""Classification objectives: label-word scoring for causal LMs, a cosine head for encoders."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import torch
import torch.nn.functional as F
from torch import nn

from zofo.assets.metrics import load_metric
from zofo.assets.objectives.base import Batch, Objective, clip, encode_rows, join_batches, left_pad
from zofo.assets.tasks.base import TaskData
from zofo.core.config import TaskConfig
from zofo.core.errors import ConfigError


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

    # Where collate pads: a prompt's last token stays at position -1, where the label word is scored.
    padding_side = "left"

    def loss(self, batch: Batch) -> torch.Tensor:
        batch = self.on_device(batch)
        return F.cross_entropy(self.scores(batch), batch["labels"])

    def losses(self, batches: Sequence[Batch]) -> list[torch.Tensor]:
        """Each batch's mean cross-entropy from one forward over all of them: the same numbers as
        ``loss`` per batch up to float rounding (the products see another shape)."""
        if len(batches) < 2:
            return [self.loss(b) for b in batches]
        joined = self.on_device(join_batches(batches, self.pad_id, self.padding_side))
        per_example = F.cross_entropy(self.scores(joined), joined["labels"], reduction="none")
        return [part.mean() for part in per_example.split([len(b["labels"]) for b in batches])]

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

    padding_side = "right"  # BERT-style absolute positions start at the first real token

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
