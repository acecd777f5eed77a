"""Clients that evaluate the same weights share one forward (simulation only).

Each client's loss from the stacked forward must equal its own forward's to float tolerance, for
batches of different sizes and widths (so that rows are padded further than their own collate padded
them), on a left-padded causal LM and a right-padded encoder; and FeedSign run with and without the
batched forward must send the same signs and end at the same weights.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping

import pytest
import torch

from zofo.assets.models import load_model
from zofo.assets.objectives import build_objective
from zofo.core.config import ModelConfig, TaskConfig, ZOConfig
from zofo.core.registry import TASKS
from zofo.methods.base import ClientData, RunContext
from zofo.methods.feedsign import FeedSign, FeedSignParams

# Sizes and token budgets of three clients' batches: unequal sizes, and rows cut to unequal lengths.
SIZES = (3, 1, 5)


def _objective(model_name: str, seed: int = 0):
    cfg = TaskConfig(name="bbc-news", max_input_tokens=12)
    task = TASKS.get("bbc-news")(cfg)
    loaded = load_model(ModelConfig(name=model_name), seed=seed)
    obj = build_objective(loaded, task, cfg)
    rows = list(obj.encode_split(task.splits["train"].select(range(40))))
    return obj, rows


def _batches(obj, rows: list[Mapping], offset: int = 0) -> list[dict[str, torch.Tensor]]:
    """Three batches of SIZES rows; the rows of batch i are cut to 6 + 2 i tokens, so widths differ."""
    out, start = [], offset
    for i, n in enumerate(SIZES):
        part = [dict(r, input_ids=list(r["input_ids"])[: 6 + 2 * i]) for r in rows[start : start + n]]
        out.append(obj.collate(part))
        start += n
    return out


@pytest.mark.parametrize("model_name", ["tiny-llama", "tiny-bert"])
def test_stacked_forward_gives_each_batch_its_own_loss(model_name: str) -> None:
    obj, rows = _objective(model_name)
    batches = _batches(obj, rows)
    widths = {b["input_ids"].shape[1] for b in batches}
    assert len(widths) == len(SIZES), "the batches must differ in width, so that joining them pads"
    with torch.no_grad():
        separate = [obj.loss(b) for b in batches]
        together = obj.losses(batches)
    assert len(together) == len(SIZES)
    torch.testing.assert_close(torch.stack(together), torch.stack(separate), rtol=1e-5, atol=1e-6)
    # and the losses really are per batch: the batches' losses differ from one another
    assert len({round(float(v), 4) for v in separate}) == len(SIZES)


class _Clients:
    """The same client batches, replayed for each run: client k yields batch k of every round."""

    def __init__(self, obj, rows: list[Mapping], rounds: int):
        self.per_round = [_batches(obj, rows, offset=9 * r % 30) for r in range(rounds)]

    def clients(self, round_idx: int) -> list[ClientData]:
        def endless(b: dict[str, torch.Tensor]) -> Iterator[dict[str, torch.Tensor]]:
            return itertools.repeat(b)

        return [
            ClientData(client_id=k, num_examples=10, batches=endless(b), batch_size=len(b["labels"]))
            for k, b in enumerate(self.per_round[round_idx - 1])
        ]


def _feedsign_run(model_name: str, batch_clients: bool, rounds: int) -> tuple[list[list[bool]], list]:
    obj, rows = _objective(model_name, seed=3)
    clients = _Clients(obj, rows, rounds)
    ctx = RunContext(
        model=obj.model,
        loss=obj.loss,
        losses=obj.losses,
        zo=ZOConfig(eps=1e-3, batch_clients=batch_clients, generator="philox"),
        seed=7,
        num_clients=len(SIZES),
        cohort_size=len(SIZES),
    )
    method = FeedSign(FeedSignParams(lr=1e-3), ctx)
    method.setup()
    calls = {"forwards": 0}
    handle = obj.model.register_forward_hook(lambda *a: calls.__setitem__("forwards", calls["forwards"] + 1))
    signs = []
    for r in range(1, rounds + 1):
        results = method.client_updates(r, clients.clients(r), lambda c: torch.random.fork_rng())
        signs.append([bool(p["sign"].item()) for p, _ in results])
        assert [steps for _, steps in results] == [1] * len(SIZES)
        method.aggregate(r, [p for p, _ in results])
        method.end_round(r)
    handle.remove()
    # Two forwards a round when batched (one per side), two per client otherwise.
    assert calls["forwards"] == rounds * 2 * (1 if batch_clients else len(SIZES))
    return signs, [p.detach().clone() for p in obj.model.parameters()]


@pytest.mark.parametrize("model_name", ["tiny-llama", "tiny-bert"])
def test_feedsign_batched_clients_send_the_same_signs_and_reach_the_same_weights(model_name: str) -> None:
    rounds = 8
    signs_batched, w_batched = _feedsign_run(model_name, True, rounds)
    signs_separate, w_separate = _feedsign_run(model_name, False, rounds)
    assert signs_batched == signs_separate
    # the votes were not all alike, so a sign computed from the wrong client's loss would show
    assert len({s for rnd in signs_separate for s in rnd}) == 2
    for a, b in zip(w_batched, w_separate, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_the_engine_runs_feedsign_batched_to_the_separate_runs_rows(tmp_path, run_config_dict) -> None:
    """Through the round loop: the same bits, and the same losses and accuracy to float tolerance."""
    from conftest import read_rows

    from zofo.core.config import RunConfig
    from zofo.engine.loop import run

    rows = {}
    for batched in (False, True):
        data = run_config_dict("feedsign", {"lr": 1e-3}, zo={"batch_clients": batched})
        data["federation"]["rounds"] = 3
        rows[batched] = read_rows(run(RunConfig.from_dict(data), tmp_path / str(batched), progress=False))
    assert len(rows[True]) == len(rows[False]) == 4
    for a, b in zip(rows[True], rows[False], strict=True):
        assert (a["bits_up"], a["bits_down"], a["local_steps_total"]) == (
            b["bits_up"],
            b["bits_down"],
            b["local_steps_total"],
        )
        assert a["metric"] == b["metric"]
        assert abs(a["eval_loss"] - b["eval_loss"]) < 1e-5
        if a["train_loss"] is not None:
            assert abs(a["train_loss"] - b["train_loss"]) < 1e-5
