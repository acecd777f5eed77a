"""ZO-FedSGD, FeedSign's baseline: every client its own seed, (seed, scalar) up, all pairs down.

Client k draws its own 32-bit seed s_k, estimates p_k along z(s_k) and uploads (s_k, p_k): 64 bits.
The server broadcasts all N pairs so every party can apply w -= (lr / N) * sum_k p_k z(s_k).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from zofo.config import positive
from zofo.methods.base import ClientData, FederatedMethod, Payload
from zofo.registry import METHODS
from zofo.rng import seed32
from zofo.zo import SeededDirections, trainable_parameters


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

    def setup(self) -> None:
        self.ctx.model.eval()
        # fast mode keeps every client's z until the server applies it: one generation per seed.
        self.dirs = SeededDirections(
            trainable_parameters(self.ctx.model),
            self.ctx.zo.eps,
            self.ctx.zo.mode,
            cache_size=self.ctx.cohort_size,
        )

    def client_update(self, round_idx: int, client: ClientData) -> Payload:
        batch = next(client.batches)
        seed = seed32(self.ctx.seed, "zo-fedsgd", "round", round_idx, "client", client.client_id)
        with torch.no_grad():
            p = self.dirs.estimate(seed, lambda: self.ctx.loss(batch))
        return {
            "seed": torch.tensor([seed], dtype=torch.uint32),
            "grad": torch.tensor([p], dtype=torch.float32),
        }

    def formula_bits(self, d: int, n: int) -> tuple[int, int]:
        return 64, 64 * n  # (uint32 seed, fp32 scalar) up; all n pairs down

    def aggregate(self, round_idx: int, payloads: list[Payload]) -> Payload:
        n = len(payloads)
        for pl in payloads:
            self.dirs.update(int(pl["seed"].item()), self.params.lr * float(pl["grad"].item()) / n)
        return {
            "seeds": torch.cat([pl["seed"] for pl in payloads]),
            "grads": torch.cat([pl["grad"] for pl in payloads]),
        }
