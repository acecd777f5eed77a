"""Causal LM x generation: response-only next-token loss, scored by Rouge-L of greedy decoding.

An example is ``prompt ids + response ids``. The prompt is the task's ``prompt`` with ``{text}``
replaced by the input truncated to ``max_input_tokens`` tokens, rendered as one user turn of the
tokenizer's chat template (ending with the assistant header) when the tokenizer has one, else inside a
plain ``User: ... / Assistant:`` frame. The response is the target truncated to ``max_new_tokens``
tokens (the most greedy decoding may produce), followed by the tokenizer's EOS when it has one and the
target was not cut: an EOS after a cut would teach the model to stop mid-sentence, and the budget
stops decoding there anyway.

Batches are left-padded with position ids that count real tokens only, so every response ends at the
last position and the LM head runs on the last ``longest response + 1`` positions only. ``labels``
hold the response tokens and -100 on prompt and padding. Generation is scored against the full,
untruncated ``target``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import torch
import torch.nn.functional as F
from torch import nn

from zofo.assets.metrics import load_metric
from zofo.assets.objectives.base import Batch, Objective, clip, encode_rows, left_pad
from zofo.assets.tasks.base import TaskData
from zofo.core.config import TaskConfig

IGNORE = -100
# For tokenizers without a chat template (base LMs, the random test models).
PLAIN_FRAME = "User: {content}\nAssistant:"


class GenerationObjective(Objective):
    """Response-token cross-entropy for training; Rouge-L of greedy decoding for evaluation."""

    metric_name = "rouge_l"

    def __init__(self, model: nn.Module, tokenizer: Any, task: TaskData, cfg: TaskConfig):
        super().__init__(model, tokenizer, task, cfg)
        if "{text}" not in task.prompt:
            raise ValueError(f"task prompt {task.prompt!r} has no '{{text}}' placeholder")
        self.eos_id = tokenizer.eos_token_id
        frame = self._frame()
        pre, _, post = frame.partition("{text}")
        self._pre, self._post = self._ids(pre), self._ids(post)
        if not getattr(tokenizer, "chat_template", None) and tokenizer.bos_token_id is not None:
            # Templates write their own BOS into the text; a plain frame gets the one the LM expects.
            self._pre = [tokenizer.bos_token_id] + self._pre

    def _frame(self) -> str:
        """The prompt text around ``{text}``, as the model will see it before its response."""
        if getattr(self.tokenizer, "chat_template", None):
            frame = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": self.task.prompt}], add_generation_prompt=True, tokenize=False
            )
            if "{text}" not in frame:
                raise ValueError("the tokenizer's chat template did not keep the user message verbatim")
            return frame
        return PLAIN_FRAME.format(content=self.task.prompt)

    def encode_split(self, ds: datasets.Dataset) -> datasets.Dataset:
        k, n = self.cfg.max_input_tokens, self.cfg.max_new_tokens
        eos = [self.eos_id] if self.eos_id is not None else []

        def enc(row: Mapping[str, Any]) -> dict[str, Any]:
            prompt = self._pre + self._ids(clip(row["text"], k))[:k] + self._post
            target = clip(row["target"], n)
            response = self._ids(target)
            cut = len(response) > n or len(target) < len(row["target"])
            response = response[:n] if cut else response + eos
            if not prompt or not response:
                raise ValueError(f"empty prompt or response after tokenising: {row['text']!r}")
            return {"prompt_ids": prompt, "response_ids": response}

        return encode_rows(ds, enc, f"{type(self).__name__}-{self.cfg.max_input_tokens}-{n}")

    def collate(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        seqs = [list(r["prompt_ids"]) + list(r["response_ids"]) for r in rows]
        batch = left_pad(seqs, self.pad_id)
        labels = torch.full_like(batch["input_ids"], IGNORE)
        for i, r in enumerate(rows):
            m = len(r["response_ids"])
            labels[i, -m:] = batch["input_ids"][i, -m:]
        batch["labels"] = labels
        return batch

    def _token_losses(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-position CE on the last positions of the batch and the mask of response tokens there."""
        batch = self.on_device(batch)
        labels = batch["labels"]
        # Left padding puts every response at the end: logits are needed for the last r + 1 positions
        # only (the position before each response token), which spares the LM head everywhere else.
        r = int((labels != IGNORE).sum(-1).max())
        out = self.model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            position_ids=batch["position_ids"],
            logits_to_keep=r + 1,
        )
        # float32 logits whatever the model's dtype: the loss is computed in float32.
        logits = out.logits[:, -(r + 1) : -1, :].float()
        targets = labels[:, -r:]
        ce = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE, reduction="none"
        ).view_as(targets)
        return ce, targets != IGNORE

    def loss(self, batch: Batch) -> torch.Tensor:
        ce, mask = self._token_losses(batch)
        return ce.sum() / mask.sum()

    @torch.no_grad()
    def generate(self, rows: Sequence[Mapping[str, Any]]) -> list[str]:
        """Greedy continuations of the rows' prompts, decoded without special tokens."""
        batch = self.on_device(left_pad([r["prompt_ids"] for r in rows], self.pad_id))
        kwargs = {"eos_token_id": self.eos_id} if self.eos_id is not None else {}
        out = self.model.generate(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            do_sample=False,
            max_new_tokens=self.cfg.max_new_tokens,
            pad_token_id=self.pad_id,
            **kwargs,
        )
        new = out[:, batch["input_ids"].shape[1] :]
        return [t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]

    @torch.no_grad()
    def evaluate(self, ds: datasets.Dataset) -> dict[str, float]:
        was_training = self.model.training
        self.model.eval()
        try:
            preds: list[str] = []
            total_ce, total_tokens = 0.0, 0
            bs = self.cfg.eval_batch_size
            for start in range(0, len(ds), bs):
                rows = ds.select(range(start, min(start + bs, len(ds))))
                ce, mask = self._token_losses(self.collate(rows))
                total_ce += float(ce.sum())
                total_tokens += int(mask.sum())
                preds += self.generate(rows)
        finally:
            self.model.train(was_training)
        scores = load_metric("rouge_l", self.cfg.rouge_scorer).compute(
            predictions=preds, references=list(ds["target"])
        )
        return {"metric": scores["rouge_l"], "eval_loss": total_ce / total_tokens}
