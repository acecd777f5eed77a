"""The encoded-data cache gives the batches the uncached path gives, and is keyed by what encoding reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from zofo.assets.models import load_model
from zofo.assets.objectives import build_objective
from zofo.core.config import ModelConfig, TaskConfig
from zofo.core.registry import TASKS
from zofo.engine.data import EncodedSplit, encoded_split
from zofo.engine.prepare import client_batches


def _objective(model: str = "tiny-bert", max_tokens: int = 12):
    cfg = TaskConfig(name="bbc-news", max_input_tokens=max_tokens)
    task = TASKS.get("bbc-news")(cfg)
    return build_objective(load_model(ModelConfig(name=model), seed=0), task, cfg), task


def _take(batches, n: int) -> list[dict[str, torch.Tensor]]:
    return [next(batches) for _ in range(n)]


@pytest.mark.parametrize("model", ["tiny-bert", "tiny-llama"])
def test_cached_splits_give_the_same_batches_as_the_dataset(model: str, tmp_path: Path) -> None:
    obj, task = _objective(model)
    split = task.splits["train"]
    reference = obj.encode_split(split)  # the datasets path every run took before the cache
    first = encoded_split(obj, split, tmp_path)  # encodes and writes
    again = encoded_split(obj, split, tmp_path)  # reads the file
    assert len(list(tmp_path.iterdir())) == 1
    shard = list(range(3, 400, 7))
    for data in (first, again):
        assert isinstance(data, EncodedSplit)
        assert data["label"] == reference["label"] and data["category"] == reference["category"]
        ours = _take(client_batches(obj, data, shard, 8, np.random.default_rng(5)), 12)
        theirs = _take(client_batches(obj, reference, shard, 8, np.random.default_rng(5)), 12)
        for a, b in zip(ours, theirs, strict=True):
            assert a.keys() == b.keys()
            for k in a:
                assert torch.equal(a[k], b[k]), k
    # evaluation reads the split in slices: the same rows, the same collated tensors
    assert torch.equal(
        obj.collate(again.select(range(10, 42)))["input_ids"],
        obj.collate(reference.select(range(10, 42)))["input_ids"],
    )


def test_a_second_run_reads_the_cache_instead_of_encoding(tmp_path: Path, monkeypatch) -> None:
    obj, task = _objective()
    split = task.splits["validation"]
    first = encoded_split(obj, split, tmp_path)

    def refuse(ds):
        raise AssertionError("encoded again although the cache holds this split")

    monkeypatch.setattr(obj, "encode_split", refuse)
    assert encoded_split(obj, split, tmp_path).to_dict() == first.to_dict()


def test_the_key_follows_the_token_budget_the_tokenizer_and_the_rows(tmp_path: Path) -> None:
    bert12, task = _objective("tiny-bert", 12)
    bert16, _ = _objective("tiny-bert", 16)
    llama12, _ = _objective("tiny-llama", 12)
    split = task.splits["validation"]
    for obj in (bert12, bert16, llama12):
        encoded_split(obj, split, tmp_path)
    encoded_split(bert12, split.select(range(20)), tmp_path)
    assert len(list(tmp_path.glob("*.pt"))) == 4
    # and each file holds its own encoding: the 16-token budget keeps longer rows
    longest = {len(r) for r in encoded_split(bert16, split, tmp_path)["input_ids"]}
    assert max(longest) == 16 + 2  # [CLS] + 16 tokens + [SEP]


def test_a_damaged_cache_file_is_encoded_again(tmp_path: Path) -> None:
    obj, task = _objective()
    split = task.splits["validation"]
    good = encoded_split(obj, split, tmp_path).to_dict()
    (path,) = tmp_path.glob("*.pt")
    path.write_bytes(b"not a torch file")
    assert encoded_split(obj, split, tmp_path).to_dict() == good
    assert encoded_split(obj, split, tmp_path).to_dict() == good  # and the file was replaced
    assert path.read_bytes() != b"not a torch file"
