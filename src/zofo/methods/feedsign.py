"""FeedSign (arXiv 2501.17610): one shared seed per step, one sign bit up, one vote bit down.

Per step t every client estimates the projected gradient along the *same* direction z(s_t), where s_t
is derived from the run seed and t (nothing to download but the vote), and uploads only its sign. The
server broadcasts the majority vote v_t, and every party applies w -= lr * v_t * z(s_t): the
magnitude of the estimate is discarded, which is what bounds a Byzantine client's influence to one vote.

Catch-up. A client absent for m steps downloads the m votes it missed (m bits; the step seeds derive
from the run seed and the step) and applies them before it takes part: ``catch_up``, counted in the
run's downlink. Its first step counts as a return from w0 (nothing in step 1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal

import torch

from zofo.core.config import ZOConfig, positive
from zofo.core.registry import METHODS
from zofo.core.seeds import derive, seed32
from zofo.core.zo import SeededDirections, trainable_parameters
from zofo.methods.base import BroadcastLog, ClientData, FederatedMethod, Field, Payload


@dataclass(frozen=True)
class FeedSignParams:
    # Step size: each step moves the weights by exactly lr * z(s_t), up or down.
    lr: float = 1e-5
    # A tied vote (possible with an even number of clients) cannot be sent as "no step" in one bit:
    # "random" breaks it with a coin derived from the run seed and t (unbiased, costs no bits);
    # "positive" always takes +1.
    tie: Literal["random", "positive"] = "random"

    def __post_init__(self) -> None:
        positive("method.params.lr", self.lr)


def majority_vote(signs: list[int], tie_break: int) -> int:
    """sign(sum(signs)) for signs in {-1, +1}; ``tie_break`` (+1 or -1) decides a zero sum."""
    total = sum(signs)
    return tie_break if total == 0 else (1 if total > 0 else -1)


@METHODS.register("feedsign")
class FeedSign(FederatedMethod):
    Params = FeedSignParams
    family = "zo"
    holds_between_clients = True  # every client of a step perturbs along the same z
    reference = "FeedSign, arXiv 2501.17610 (abstract and reviews; no official code available)"
    uplink = {"sign": Field("sign", (1,), torch.bool)}  # True = a positive projected gradient
    test_params = {"lr": 1e-3}
    # The votes some client has not received yet: what a returning client downloads (catch_up).
    state_attrs = ("broadcasts",)

    def setup(self) -> None:
        self.ctx.model.eval()  # ZO compares two losses: no dropout noise between them
        self.dirs = SeededDirections.from_config(trainable_parameters(self.ctx.model), self.ctx.zo)
        self.broadcasts = BroadcastLog(self.ctx.num_clients)

    @classmethod
    def memory_factor(cls, params: Any, zo: ZOConfig, cohort_size: int) -> float:
        # Inference level (weights + 10% for activations), plus the cached z in fast mode.
        return 1.1 + (1.0 if zo.mode == "fast" else 0.0)

    def step_seed(self, round_idx: int) -> int:
        return seed32(self.ctx.seed, "feedsign", "step", round_idx)

    def catch_up(self, round_idx: int, client_id: int) -> Payload | None:
        return self.broadcasts.missed(round_idx, client_id)

    def client_update(self, round_idx: int, client: ClientData) -> Payload:
        self.broadcasts.joined(round_idx, client.client_id)
        batch = next(client.batches)
        with torch.no_grad():
            # Every client of the round perturbs along the same z: held at -eps, the next client's
            # +eps and the server's restore + update each take one pass instead of two (zo.fuse).
            p = self.dirs.estimate(self.step_seed(round_idx), lambda: self.ctx.loss(batch), hold=True)
        # sign(0) has no bit of its own; an exactly-zero estimate is sent as -1 (measure zero in fp32
        # unless the loss ignores the perturbation entirely).
        return {"sign": torch.tensor([p > 0])}

    def client_updates(
        self,
        round_idx: int,
        clients: Sequence[ClientData],
        isolated: Callable[[ClientData], AbstractContextManager[Any]],
    ) -> list[tuple[Payload, int]]:
        """The round's clients all evaluate the same two perturbed weights, w +- eps z(s_t): with
        ``zo.batch_clients`` their +eps losses come from one batched forward and their -eps losses from
        another, each client's equal to its own forward's up to float rounding. The weights move three
        times a round (+eps, -2 eps, then restore and update) instead of twice per client. The model is
        in eval mode, so no client's forward draws from a generator and ``isolated`` has nothing to
        keep apart."""
        if not self.ctx.zo.batch_clients or len(clients) < 2:
            return super().client_updates(round_idx, clients, isolated)
        for c in clients:
            self.broadcasts.joined(round_idx, c.client_id)
        batches = [next(c.batches) for c in clients]
        with torch.no_grad():
            estimates = self.dirs.estimates(
                self.step_seed(round_idx), lambda: self.ctx.batch_losses(batches), hold=True
            )
        return [({"sign": torch.tensor([p > 0])}, 1) for p in estimates]

    @classmethod
    def aggregators(cls, params: FeedSignParams) -> tuple[str, ...]:
        return ("mean", "majority")  # both name the vote, FeedSign's rule by definition

    def aggregate(self, round_idx: int, payloads: list[Payload]) -> Payload:
        signs = [1 if bool(pl["sign"].item()) else -1 for pl in payloads]
        if self.params.tie == "positive":
            tie_break = 1
        else:
            tie_break = 1 if derive(self.ctx.seed, "feedsign", "tie", round_idx) & 1 else -1
        vote = majority_vote(signs, tie_break)
        self.dirs.update(self.step_seed(round_idx), self.params.lr * vote)
        broadcast = {"vote": torch.tensor([vote > 0])}
        self.broadcasts.sent(round_idx, broadcast)
        return broadcast

    def end_round(self, round_idx: int) -> None:
        self.dirs.settle()  # no valid sign arrived: nothing absorbed the held perturbation

    def formula_bits(self, d: int, n: int) -> tuple[int, int]:
        return 1, 1  # a sign up, the vote down

    def describe(self) -> dict:
        return {"tie_rule": self.params.tie, "zero_estimate_sign": -1, "seed_per_step": "shared"}
