"""The generation path: chatterbot pairs and split, the two Rouge-L scorers, the response-only loss and
greedy-decoding evaluation of ``GenerationObjective``, and one engine run on chatterbot."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from zofo.assets.metrics import load_metric
from zofo.assets.models import LoadedModel, load_model
from zofo.assets.objectives.generation import GenerationObjective
from zofo.assets.tasks import chatterbot as chatterbot_module
from zofo.assets.tasks.base import TaskData
from zofo.assets.tasks.chatterbot import chatterbot
from zofo.core.config import ModelConfig, RunConfig, TaskConfig
from zofo.engine.loop import run

SCORERS = ("rouge", "rouge-score")


# ---------------------------------------------------------------- task


@pytest.fixture(scope="module")
def task() -> TaskData:
    return chatterbot(TaskConfig(name="chatterbot"))


def test_chatterbot_categories_labels_and_known_pair(task: TaskData) -> None:
    stems = sorted(p.stem for p in chatterbot_module.data_dir().glob("*.yml"))
    assert len(stems) == 21
    assert task.kind == "generation" and task.metric == "rouge_l"
    assert task.label_names == tuple(stems)
    for split in task.splits.values():
        for cat, label in zip(split["category"], split["label"], strict=True):
            assert task.label_names[label] == cat
    # Stratified split: every topic keeps training data, so every natural client can train.
    assert set(task.splits["train"]["category"]) == set(stems)
    everything = [
        (r["text"], r["target"], r["category"])
        for s in task.splits.values()
        for r in s.select_columns(["text", "target", "category"])
    ]
    assert (
        "What is AI?",
        "Artificial Intelligence is the branch of engineering and science devoted to constructing machines "
        "that think.",
        "ai",
    ) in everything


def test_chatterbot_no_empty_text_and_disjoint_splits(task: TaskData) -> None:
    pairs = {}
    for name, split in task.splits.items():
        assert all(t.strip() for t in split["text"]), name
        assert all(t.strip() for t in split["target"]), name
        pairs[name] = set(zip(split["text"], split["target"], strict=True))
        # duplicates are removed at load time, so a split holds no pair twice
        assert len(pairs[name]) == len(split), name
    assert not pairs["train"] & pairs["validation"]
    assert not pairs["train"] & pairs["test"]
    assert not pairs["validation"] & pairs["test"]
    n = sum(len(s) for s in task.splits.values())
    assert n == task.notes["pairs_read"] - task.notes["duplicates_removed"]
    assert len(task.splits["test"]) == pytest.approx(0.2 * n, abs=len(task.label_names))


def test_chatterbot_pairs_consecutive_turns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "b_topic.yml").write_text(
        "categories: [b]\nconversations:\n"
        "- [one, two, three]\n"  # -> (one, two), (two, three)
        "- [one, two]\n"  # exact duplicate of an earlier pair: dropped
        "- [q, '', r]\n"  # both pairs touch an empty turn: dropped
        "- [x, 5]\n"  # non-string turn: dropped
        "- just a string\n"  # not a list of turns: dropped
    )
    (tmp_path / "a_topic.yml").write_text("categories: [a]\nconversations:\n- [hi, hello]\n")
    monkeypatch.setattr(chatterbot_module, "data_dir", lambda: tmp_path)
    ds, names, counts = chatterbot_module.load_pairs()
    assert names == ("a_topic", "b_topic")
    assert list(zip(ds["text"], ds["target"], ds["category"], ds["label"], strict=True)) == [
        ("hi", "hello", "a_topic", 0),
        ("one", "two", "b_topic", 1),
        ("two", "three", "b_topic", 1),
    ]
    assert counts == {
        "pairs_read": 4,
        "duplicates_removed": 1,
        "unusable_pairs": 3,
        "unusable_conversations": 1,
    }


# ---------------------------------------------------------------- Rouge-L


def rouge_l(scorer: str, predictions: list[str], references: list[str]) -> float:
    return load_metric("rouge_l", scorer).compute(predictions=predictions, references=references)["rouge_l"]


@pytest.mark.parametrize("scorer", SCORERS)
def test_rouge_identical_disjoint_empty(scorer: str) -> None:
    # rouge 1.0.1 adds 1e-8 to the F denominator, so identical texts score 1 - 5e-9
    assert rouge_l(scorer, ["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(
        1.0, abs=1e-6
    )
    assert rouge_l(scorer, ["dogs bark loudly"], ["the cat sat"]) == 0.0
    # an empty generation scores 0 instead of raising (rouge 1.0.1 raises on it)
    assert rouge_l(scorer, ["", " . "], ["the cat sat", "the cat sat"]) == 0.0
    # the mean over pairs: (1 + 0) / 2
    assert rouge_l(scorer, ["a b c", "x"], ["a b c", "y"]) == pytest.approx(0.5, abs=1e-6)
    out = load_metric("rouge_l", scorer).compute(predictions=["a"], references=["a"])
    assert out["scorer"] == scorer


def test_rouge_hand_computed_values_and_where_scorers_differ() -> None:
    ref, pred = "the cat sat on the mat", "the cat on the mat"
    # rouge-score, tokens with repeats: LCS("the cat sat on the mat", "the cat on the mat") = "the cat on
    # the mat" = 5; P = 5/5, R = 5/6, F = 2PR/(P+R) = (10/6)/(11/6) = 10/11.
    assert rouge_l("rouge-score", [pred], [ref]) == pytest.approx(10 / 11, abs=1e-9)
    # rouge 1.0.1 (exclusive=True) counts distinct words: the LCS "the cat on the mat" holds 4 distinct
    # words, the reference 5 {the cat sat on mat}, the prediction 4; P = 4/4, R = 4/5, F = 1.6/1.8 = 8/9.
    assert rouge_l("rouge", [pred], [ref]) == pytest.approx(8 / 9, abs=1e-6)
    # Repeats: rouge-score LCS("the", "the the the") = 1, P = 1/3, R = 1/1, F = (2/3)/(4/3) = 1/2;
    # rouge 1.0.1 sees the set {the} on both sides: F = 1.
    assert rouge_l("rouge-score", ["the the the"], ["the"]) == pytest.approx(0.5, abs=1e-9)
    assert rouge_l("rouge", ["the the the"], ["the"]) == pytest.approx(1.0, abs=1e-6)
    # Case and punctuation: rouge-score lowercases and drops punctuation (LCS 2 of 2 -> 1); rouge 1.0.1
    # compares "Hello," with "hello" and "World" with "world" (the "." ends a sentence): LCS 0 -> 0.
    assert rouge_l("rouge-score", ["Hello, World."], ["hello world"]) == pytest.approx(1.0)
    assert rouge_l("rouge", ["Hello, World."], ["hello world"]) == 0.0


def test_rouge_unknown_scorer_names_allowed_values() -> None:
    with pytest.raises(ValueError, match="rouge-score"):
        load_metric("rouge_l", "bleu")


# ---------------------------------------------------------------- objective on the tiny random model


ROWS = {
    "text": ["what is ai?", "tell me a joke about computers and people", "hi"],
    "target": ["a field of computer science.", "why did the chicken cross the road?", "hello there"],
    "category": ["ai", "humor", "greetings"],
    "label": [0, 1, 2],
}


def tiny_llama() -> LoadedModel:
    return load_model(ModelConfig(name="tiny-llama"))


def make_objective(loaded: LoadedModel, **cfg) -> GenerationObjective:
    import datasets

    task = TaskData(
        kind="generation",
        splits=datasets.DatasetDict({"test": datasets.Dataset.from_dict(ROWS)}),
        label_names=("ai", "humor", "greetings"),
        metric="rouge_l",
    )
    defaults = {"name": "chatterbot", "max_input_tokens": 16, "max_new_tokens": 4, "eval_batch_size": 2}
    return GenerationObjective(loaded.model, loaded.tokenizer, task, TaskConfig(**{**defaults, **cfg}))


def test_collate_labels_only_on_response_tokens() -> None:
    obj = make_objective(tiny_llama(), max_new_tokens=16)
    ds = obj.encode_split(obj.task.splits["test"])
    batch = obj.collate(ds)
    width = batch["input_ids"].shape[1]
    for i, r in enumerate(ds):
        p, a = len(r["prompt_ids"]), len(r["response_ids"])
        pad = width - p - a
        assert batch["attention_mask"][i].tolist() == [0] * pad + [1] * (p + a)
        assert batch["input_ids"][i, pad:].tolist() == r["prompt_ids"] + r["response_ids"]
        assert batch["labels"][i].tolist() == [-100] * (pad + p) + r["response_ids"]
    # rows of different lengths, so padding is exercised
    assert (batch["attention_mask"] == 0).any()


def test_prompt_truncation_eos_and_chat_template() -> None:
    loaded = tiny_llama()
    tok = loaded.tokenizer
    # Give the test tokenizer what chat LMs have: an EOS and a chat template.
    tok.eos_token = "[SEP]"
    tok.chat_template = (
        "{% for m in messages %}[ {{ m['role'] }} ] {{ m['content'] }} {% endfor %}"
        "{% if add_generation_prompt %}[ assistant ]{% endif %}"
    )
    obj = make_objective(loaded, max_input_tokens=3, max_new_tokens=3)
    ds = obj.encode_split(obj.task.splits["test"])
    ids = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    for r in ds:
        text = tok.convert_tokens_to_string(tok.tokenize(r["text"])[:3])
        assert r["prompt_ids"] == ids(f"[ user ] {text} [ assistant ]")
        full = ids(r["target"])
        # cut targets keep exactly max_new_tokens tokens and no EOS; whole ones end with EOS
        expected = full[:3] if len(full) > 3 else full + [tok.eos_token_id]
        assert r["response_ids"] == expected
    assert [len(r) for r in ds["response_ids"]] == [3, 3, 3]  # "hello there" + EOS, the others cut


def test_loss_is_mean_cross_entropy_on_response_tokens() -> None:
    obj = make_objective(tiny_llama(), max_new_tokens=16)
    batch = obj.collate(obj.encode_split(obj.task.splits["test"]))
    loss = obj.loss(batch)
    assert math.isfinite(loss.item())
    logits = obj.model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        position_ids=batch["position_ids"],
    ).logits
    manual = F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), batch["labels"][:, 1:].reshape(-1), ignore_index=-100
    )
    assert loss.item() == pytest.approx(manual.item(), rel=1e-5)
    loss.backward()
    assert obj.model.model.embed_tokens.weight.grad.abs().sum() > 0
    # Only response tokens are targets: moving the first response token into the prompt (label -100)
    # changes the loss to the mean over the remaining response tokens.
    labels = batch["labels"].clone()
    first = (labels[0] != -100).nonzero()[0, 0]
    labels[0, first] = -100
    shorter = obj.loss({**batch, "labels": labels})
    manual = F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100
    )
    assert shorter.item() == pytest.approx(manual.item(), rel=1e-5)
    assert shorter.item() != pytest.approx(loss.item(), rel=1e-5)


def test_evaluate_scores_greedy_generation_and_restores_mode() -> None:
    obj = make_objective(tiny_llama(), max_new_tokens=4)
    ds = obj.encode_split(obj.task.splits["test"])
    for training in (True, False):
        obj.model.train(training)
        out = obj.evaluate(ds)
        assert obj.model.training is training
        assert 0.0 <= out["metric"] <= 1.0
        assert math.isfinite(out["eval_loss"]) and out["eval_loss"] > 0
    # batched left-padded decoding gives what each prompt gives alone
    assert obj.generate(ds) == [obj.generate(ds.select([i]))[0] for i in range(len(ds))]
    # eval_loss is the token-weighted mean over all response tokens
    batch = obj.collate(ds)
    with torch.no_grad():
        assert out["eval_loss"] == pytest.approx(obj.loss(batch).item(), rel=1e-5)


# ---------------------------------------------------------------- engine


def test_engine_run_on_chatterbot(tmp_path: Path) -> None:
    cfg = RunConfig.from_dict(
        {
            "model": {"name": "tiny-llama"},
            "task": {
                "name": "chatterbot",
                "eval_max_examples": 8,
                "max_new_tokens": 4,
                "max_input_tokens": 16,
            },
            "partition": {"name": "natural", "key": "category", "num_clients": 3},
            "method": {"name": "fedavg", "params": {"lr": 1e-3, "local_steps": 1}},
            "federation": {"rounds": 2, "batch_size": 2, "eval_every": 1},
            "seed": 0,
            "threads": 1,
        }
    )
    out = run(cfg, tmp_path / "run", progress=False)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["status"] == "ok", meta.get("reason")
    assert meta["task"]["kind"] == "generation" and meta["task"]["scorer"] == "rouge_l/rouge"
    rows = [json.loads(x) for x in (out / "rounds.jsonl").read_text().splitlines() if x.strip()]
    assert [r["round"] for r in rows] == [0, 1, 2]
    for r in rows:
        assert r["metric_name"] == "rouge_l"
        assert r["scorer"] == "rouge_l/rouge"  # the scorer is recorded with every number
        assert 0.0 <= r["metric"] <= 1.0
        assert math.isfinite(r["eval_loss"])
    assert all(math.isfinite(r["train_loss"]) for r in rows[1:])
