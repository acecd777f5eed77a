"""ZO-FedSGD, FeedSign's baseline: every client its own seed, (seed, scalar) up, all pairs down.

Client k draws its own 32-bit seed s_k, estimates p_k along z(s_k) and uploads (s_k, p_k): 64 bits.
The server broadcasts all N pairs so every party can apply w -= (lr / N) * sum_k p_k z(s_k).

Catch-up. A client absent since round t downloads every pair broadcast in rounds t+1 .. now-1 (64 bits
per aggregated client of each) and replays them before it takes part: ``catch_up``, counted in the
run's downlink. Its first round counts as a return from w0 (nothing in round 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from zofo.core.config import ZOConfig, positive
from zofo.core.registry import METHODS
from zofo.core.seeds import seed32
from zofo.core.zo import SeededDirections, trainable_parameters
from zofo.methods.base import BroadcastLog, ClientData, FederatedMethod, Field, Payload


@dataclass(frozen=True)
class ZOFedSGDParams:
    # w -= (lr / N) * sum_k p_k z(s_k): lr multiplies the projected gradient, as in MeZO's ZO-SGD.
    lr: float = 1e-6

    def __post_init__(self) -> None:
        positive("method.params.lr", self.lr)


@METHODS.register("zo-fedsgd")
class ZOFedSGD(FederatedMethod):
    Params = ZOFedSGDParams
    family = "zo"
    reference = "ZO-FedSGD as FeedSign's baseline (arXiv 2501.17610)"
    uplink = {
        "seed": Field("seed", (1,), torch.uint32),  # s_k
        "grad": Field("scalar", (1,), torch.float32),  # p_k, the projected gradient along z(s_k)
    }
    test_params = {"lr": 1e-3}
    # The pairs some client has not received yet: what a returning client downloads (catch_up).
    state_attrs = ("broadcasts",)

    def setup(self) -> None:
        self.ctx.model.eval()
        # fast mode keeps every client's z until the server applies it: one generation per seed.
        self.dirs = SeededDirections.from_config(
            trainable_parameters(self.ctx.model), self.ctx.zo, cache_size=self.ctx.cohort_size
        )
        self.broadcasts = BroadcastLog(self.ctx.num_clients)

    @classmethod
    def memory_factor(cls, params: Any, zo: ZOConfig, cohort_size: int) -> float:
        # Inference level (weights + 10% for activations), plus every client's cached z in fast mode.
        return 1.1 + (cohort_size if zo.mode == "fast" else 0.0)

    def catch_up(self, round_idx: int, client_id: int) -> Payload | None:
        return self.broadcasts.missed(round_idx, client_id)

    def client_update(self, round_idx: int, client: ClientData) -> Payload:
        self.broadcasts.joined(round_idx, client.client_id)
        batch = next(client.batches)
        seed = self.client_seed(round_idx, client.client_id)
        with torch.no_grad():
            p = self.dirs.estimate(seed, lambda: self.ctx.loss(batch))
        return {
            "seed": torch.tensor([seed], dtype=torch.uint32),
            "grad": torch.tensor([p], dtype=torch.float32),
        }

    def formula_bits(self, d: int, n: int) -> tuple[int, int]:
        return 64, 64 * n  # (uint32 seed, fp32 scalar) up; all n pairs down

    @classmethod
    def aggregators(cls, params: ZOFedSGDParams) -> tuple[str, ...]:
        # Each scalar lies on its own client's direction: rules that pick or drop clients by their
        # scalar apply (selection_weights); Krum's distances between updates would need the d-vectors.
        return ("mean", "median", "trimmed-mean")

    def client_seed(self, round_idx: int, client_id: int) -> int:
        return seed32(self.ctx.seed, "zo-fedsgd", "round", round_idx, "client", client_id)

    def check_payload(self, round_idx: int, client_id: int, payload: Payload) -> str | None:
        # Seeds derive from the run seed, the round and the client: the server knows which to expect.
        expected = self.client_seed(round_idx, client_id)
        got = int(payload["seed"].item())
        return None if got == expected else f"seed {got}, expected {expected}"

    def aggregate(self, round_idx: int, payloads: list[Payload]) -> Payload:
        lr, n = self.params.lr, len(payloads)
        grads = [float(pl["grad"].item()) for pl in payloads]

        # Each scalar lies on its own client's direction, so a robust rule picks or drops clients by
        # their scalar (selection weights) instead of combining coordinates; None: a dropped client,
        # whose direction is not even regenerated.
        def selected(weights: torch.Tensor) -> list[float | None]:
            return [lr * g * w if w > 0.0 else None for g, w in zip(grads, weights.tolist(), strict=True)]

        steps = self.combine_clients(
            "scalar",
            own=lambda: [lr * g / n for g in grads],
            rows=lambda: torch.cat([pl["grad"] for pl in payloads]),
            select=selected,
        )
        for pl, step in zip(payloads, steps, strict=True):
            if step is not None:
                self.dirs.update(int(pl["seed"].item()), step)
        broadcast = {
            "seeds": torch.cat([pl["seed"] for pl in payloads]),
            "grads": torch.cat([pl["grad"] for pl in payloads]),
        }
        self.broadcasts.sent(round_idx, broadcast)
        return broadcast
