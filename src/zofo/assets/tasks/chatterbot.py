"""Chatterbot: short open-domain dialogue responses (English, 21 topic files) from ``chatterbot-corpus``.

Each conversation in ``data/english/<topic>.yml`` is a list of turns; every pair of consecutive turns
(turn i, turn i + 1) becomes one example with the first as the prompt (``text``) and the second as the
response (``target``). The file stem (``ai``, ``tech_support``, ...) is the ``category``, so the 21
topics can serve as natural clients; ``label`` is the category's index in sorted order and is what the
split is stratified on.

Exact duplicate (prompt, response) pairs are kept once, at their first occurrence in sorted file order.
The corpus repeats many pairs verbatim (``tech_support.yml`` holds 1,050 pairs of which 10 are
distinct; ``coding.yml`` lists most of its pairs twice). Kept, the copies would land on both sides of
the split, so the test score would partly measure recall of training examples, and one topic would
outweigh all others. Prompts that occur with several *different* responses stay: that ambiguity is
part of the task.

Prompt format. ``TaskData.prompt`` is ``"{text}"``: the chatterbot prompt is already a natural user
utterance, so it is sent as the user's message with no added instruction. The generation objective
(``zofo.assets.objectives.generation``) renders that message with the tokenizer's own chat template as one
user turn followed by the assistant header, which is the format an instruction-tuned model such as
SmolLM2-135M-Instruct was trained on (its template adds its default system line); the response is the
assistant turn, ended by the tokenizer's EOS (``<|im_end|>`` for SmolLM2). Tokenizers without a chat
template get a plain ``User: ...`` / ``Assistant:`` frame instead.

The package is never imported (importing it is not needed to read its data files).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from zofo.assets.tasks.base import TaskData, package_dir, split_dataset
from zofo.core.config import TaskConfig
from zofo.core.registry import TASKS

if TYPE_CHECKING:
    import datasets

PROMPT = "{text}"


def data_dir() -> Path:
    return package_dir("chatterbot_corpus", "chatterbot-corpus==1.3.3") / "data" / "english"


def _usable(turn: object) -> bool:
    return isinstance(turn, str) and bool(turn.strip())


def load_pairs() -> tuple[datasets.Dataset, tuple[str, ...], dict[str, int]]:
    """All distinct (prompt, response) pairs in sorted file order, the category names (sorted file
    stems; ``label`` indexes them) and counts of what was read and dropped."""
    import datasets  # where a task is built, not where its name is checked

    files = sorted(data_dir().glob("*.yml"))
    if not files:
        raise FileNotFoundError(f"no chatterbot topic files (*.yml) under {data_dir()}")
    names = [f.stem for f in files]
    rows: dict[str, list] = {"text": [], "target": [], "category": [], "label": []}
    seen: set[tuple[str, str]] = set()
    counts = {"pairs_read": 0, "duplicates_removed": 0, "unusable_pairs": 0, "unusable_conversations": 0}
    for label, f in enumerate(files):
        doc = yaml.safe_load(f.read_text(encoding="utf-8")) or {}
        for conv in doc.get("conversations") or []:
            # trivia.yml has one conversation written as a bare string: it has no turns to pair.
            if not isinstance(conv, list):
                counts["unusable_conversations"] += 1
                continue
            for prompt, response in zip(conv, conv[1:], strict=False):
                if not (_usable(prompt) and _usable(response)):
                    counts["unusable_pairs"] += 1
                    continue
                counts["pairs_read"] += 1
                key = (prompt.strip(), response.strip())
                if key in seen:
                    counts["duplicates_removed"] += 1
                    continue
                seen.add(key)
                rows["text"].append(key[0])
                rows["target"].append(key[1])
                rows["category"].append(names[label])
                rows["label"].append(label)
    return datasets.Dataset.from_dict(rows), tuple(names), counts


@TASKS.register("chatterbot")
def chatterbot(cfg: TaskConfig) -> TaskData:
    ds, names, counts = load_pairs()
    return TaskData(
        kind="generation",
        splits=split_dataset(ds),
        label_names=names,
        prompt=PROMPT,
        metric="rouge_l",
        source="chatterbot-corpus==1.3.3 data/english (consecutive turns, exact duplicates removed)",
        notes=counts,
    )
