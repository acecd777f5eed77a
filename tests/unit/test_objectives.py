"""Classification objectives: label-word scoring with a causal LM, the label-name head of an encoder."""

from __future__ import annotations

import torch

from zofo.assets.models import load_model
from zofo.assets.objectives import EncoderHeadObjective, LabelWordObjective, build_objective
from zofo.core.config import ModelConfig, TaskConfig
from zofo.core.registry import TASKS


def _bbc(max_tokens: int = 12):
    cfg = TaskConfig(name="bbc-news", max_input_tokens=max_tokens)
    return cfg, TASKS.get("bbc-news")(cfg)


def test_left_padding_does_not_change_a_prompts_scores() -> None:
    cfg, task = _bbc()
    loaded = load_model(ModelConfig(name="tiny-llama"), seed=1)
    obj = build_objective(loaded, task, cfg)
    assert isinstance(obj, LabelWordObjective)
    rows = list(obj.encode_split(task.splits["test"].select(range(2))))
    rows[1]["input_ids"] = rows[1]["input_ids"][:-7] + rows[1]["input_ids"][-5:]  # make it shorter
    with torch.no_grad():
        together = obj.scores(obj.collate(rows))
        alone = obj.scores(obj.collate([rows[1]]))
    assert obj.collate(rows)["attention_mask"][1, 0] == 0  # the second prompt really was padded
    torch.testing.assert_close(together[1], alone[0], rtol=1e-5, atol=1e-5)


def test_label_word_loss_is_cross_entropy_over_the_label_words() -> None:
    cfg, task = _bbc()
    loaded = load_model(ModelConfig(name="tiny-llama"), seed=2)
    obj = build_objective(loaded, task, cfg)
    batch = obj.collate(list(obj.encode_split(task.splits["train"].select(range(4)))))
    with torch.no_grad():
        full = loaded.model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            position_ids=batch["position_ids"],
        ).logits[:, -1, :]
        words = [
            loaded.tokenizer(" " + w, add_special_tokens=False)["input_ids"][0] for w in task.label_words
        ]
        expected = torch.nn.functional.cross_entropy(full[:, words], batch["labels"])
        torch.testing.assert_close(obj.loss(batch), expected, rtol=1e-5, atol=1e-6)


def test_encoder_head_starts_from_the_label_names_not_at_chance() -> None:
    """all-MiniLM-L6-v2 with a head built from the embeddings of the label names classifies BBC News
    zero-shot far above the 0.2 of chance (about 0.7); a random head would sit near chance."""
    cfg, task = _bbc(max_tokens=24)
    loaded = load_model(ModelConfig(name="minilm-l6"))
    obj = build_objective(loaded, task, cfg)
    assert isinstance(obj, EncoderHeadObjective)
    val = obj.encode_split(task.splits["validation"])
    assert obj.evaluate(val)["metric"] > 0.5
    # the same encoder with the head rows shuffled against the labels must do much worse
    with torch.no_grad():
        obj.model.head.weight.copy_(obj.model.head.weight[[1, 2, 3, 4, 0]])
    assert obj.evaluate(val)["metric"] < 0.35
