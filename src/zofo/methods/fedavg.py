"""FedAvg (McMahan et al. 2017) with full first-order local training.

Each sampled client starts from the global weights, runs ``local_steps`` optimiser steps on its own
data (zofo.methods.first_order, with the gradient clip ``max_grad_norm``) and uploads its update
w_i - w (d floats) with its example count; the server applies the example-weighted mean of the
updates. One snapshot of the global weights is kept; clients train in turn on the working model, which
is reset to the snapshot after each client.

Updates and the broadcast weights travel in the weights' dtype (16 bits a value for a bfloat16 model),
and the server sums the updates in at least float32.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Literal

import torch

from zofo.core.config import ConfigError, ZOConfig, positive
from zofo.core.registry import METHODS
from zofo.methods.base import ClientData, Field, Payload
from zofo.methods.first_order import FirstOrderMethod, LocalTraining


@dataclass(frozen=True)
class FedAvgParams:
    lr: float = 1e-5
    local_steps: int = 4
    # If set, each client trains this many passes over its own data per round instead of
    # `local_steps` (steps = ceil(epochs * examples / batch size)): the unit one-shot FL is compared in.
    local_epochs: float | None = None
    optimizer: Literal["adamw", "sgd"] = "adamw"
    weight_decay: float = 0.0
    # Clip each local gradient to this global norm; null disables clipping.
    max_grad_norm: float | None = 1.0
    # "examples": weight client updates by their data size (FedAvg); "uniform": equal weights.
    weighting: Literal["examples", "uniform"] = "examples"

    def __post_init__(self) -> None:
        positive("method.params.lr", self.lr)
        positive("method.params.local_steps", self.local_steps)
        if self.local_epochs is not None:
            positive("method.params.local_epochs", self.local_epochs)
        if self.weight_decay < 0:
            raise ConfigError("method.params.weight_decay", self.weight_decay, ">= 0")


def flatten(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten(flat: torch.Tensor, like: list[torch.Tensor]) -> list[torch.Tensor]:
    """Views of ``flat`` shaped as the tensors of ``like``, in order: the inverse of ``flatten``."""
    return [v.view_as(t) for v, t in zip(flat.split([t.numel() for t in like]), like, strict=True)]


def accumulator_dtype(dtype: torch.dtype) -> torch.dtype:
    """Where clients' updates are summed: at least float32, so a bfloat16 update is not rounded at
    every client it is added to."""
    return torch.promote_types(dtype, torch.float32)


def weighted_mean(updates: list[torch.Tensor], weights: list[float]) -> torch.Tensor:
    total = float(sum(weights))
    out = torch.zeros_like(updates[0], dtype=accumulator_dtype(updates[0].dtype))
    for u, w in zip(updates, weights, strict=True):
        out.add_(u, alpha=w / total)
    return out


@METHODS.register("fedavg")
class FedAvg(FirstOrderMethod):
    Params = FedAvgParams
    family = "fo"
    reference = "McMahan et al., AISTATS 2017"
    uplink = {
        "update": Field("dense", ("d",), "wire_dtype"),  # w_i - w in the weights' dtype
        "num_examples": Field("count", (1,), torch.uint32),
    }
    test_params = {"lr": 1e-3}

    def setup(self) -> None:
        super().setup()
        self.d = sum(p.numel() for p in self.trainable)
        # What a dense model-sized payload travels as: the trainable weights' dtype.
        self.wire_dtype = functools.reduce(torch.promote_types, (p.dtype for p in self.trainable))
        self._last_steps = 0

    @classmethod
    def memory_factor(cls, params: Any, zo: ZOConfig, cohort_size: int) -> float:
        # The model, its gradients and AdamW's two moments (SGD keeps none), the snapshot of the global
        # weights, the client's flat update, and the cohort's decoded updates the server holds.
        return (4 if params.optimizer == "adamw" else 2) + 2 + cohort_size

    def local_training(self) -> LocalTraining:
        p = self.params
        return LocalTraining(p.lr, p.optimizer, p.weight_decay, p.max_grad_norm)

    def local_steps(self) -> int:
        return self._last_steps

    def steps_for(self, client: ClientData) -> int:
        if self.params.local_epochs is None:
            return self.params.local_steps
        return max(1, math.ceil(self.params.local_epochs * client.num_examples / client.batch_size))

    def client_update(self, round_idx: int, client: ClientData) -> Payload:
        self._last_steps = self.steps_for(client)
        self.train_locally(client, self._last_steps)
        with torch.no_grad():
            update = flatten([p - g for p, g in zip(self.trainable, self.global_weights, strict=True)])
            update = update.to(self.wire_dtype)
        self.reset_to_global()
        return {"update": update, "num_examples": torch.tensor([client.num_examples], dtype=torch.uint32)}

    def _weights(self, payloads: list[Payload]) -> list[float]:
        if self.params.weighting == "examples":
            return [float(pl["num_examples"].item()) for pl in payloads]
        return [1.0] * len(payloads)

    def formula_bits(self, d: int, n: int) -> tuple[int, int]:
        # d update values + uint32 example count up; the d global weights down (fp32: 32 bits a value).
        bits = torch.finfo(self.wire_dtype).bits
        return bits * d + 32, bits * d

    def combine_updates(self, payloads: list[Payload]) -> torch.Tensor:
        """The server's update from the clients' updates: the example-weighted mean (FedAvg), or the
        configured robust rule on the stacked updates."""
        updates = [pl["update"] for pl in payloads]
        return self.combine_clients(
            "dense",
            # Streamed, not stacked: n full-size updates side by side would double the peak memory.
            own=lambda: weighted_mean(updates, self._weights(payloads)),
            rows=lambda: torch.stack(updates).to(accumulator_dtype(updates[0].dtype)),
        )

    def aggregate(self, round_idx: int, payloads: list[Payload]) -> Payload:
        delta = self.combine_updates(payloads)
        with torch.no_grad():
            for g, d in zip(self.global_weights, unflatten(delta, self.global_weights), strict=True):
                g.add_(d)
        self.load_weights(self.global_weights)
        # The next cohort downloads the new global model: d floats.
        return {"weights": flatten(self.global_weights)}
