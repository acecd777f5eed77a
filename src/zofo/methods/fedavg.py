"""FedAvg (McMahan et al. 2017) with full first-order local training.

Each sampled client starts from the global weights, runs ``local_steps`` optimiser steps on its own
data and uploads its update w_i - w (d floats) with its example count; the server applies the
example-weighted mean of the updates. One snapshot of the global weights is kept; clients train in
turn on the working model, which is reset to the snapshot after each client.

Updates and the broadcast weights travel in the weights' dtype (16 bits a value for a bfloat16 model),
and the server sums the updates in at least float32. In reduced precision there are no float32 master
weights: torch's AdamW runs on bfloat16 parameters, but a step smaller than half an ulp of a weight
(2^-9 to 2^-8 of its magnitude in bfloat16) leaves that weight unchanged.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Literal

import torch

from zofo.core.config import ConfigError, ZOConfig, positive
from zofo.core.registry import METHODS
from zofo.core.zo import trainable_parameters
from zofo.methods.base import ClientData, FederatedMethod, Payload
from zofo.robust.aggregators import combine


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
class FedAvg(FederatedMethod):
    Params = FedAvgParams
    family = "fo"
    reference = "McMahan et al., AISTATS 2017"
    state_attrs = ("global_weights",)

    def setup(self) -> None:
        self.trainable = trainable_parameters(self.ctx.model)
        self.global_weights = [p.detach().clone() for p in self.trainable]
        # What a dense model-sized payload travels as: the trainable weights' dtype.
        self.wire_dtype = functools.reduce(torch.promote_types, (p.dtype for p in self.trainable))
        self._last_steps = 0

    @classmethod
    def memory_factor(cls, params: Any, zo: ZOConfig, cohort_size: int) -> float:
        # The model, its gradients and AdamW's two moments (SGD keeps none), the snapshot of the global
        # weights, the client's flat update, and the cohort's decoded updates the server holds.
        return (4 if params.optimizer == "adamw" else 2) + 2 + cohort_size

    def local_steps(self) -> int:
        return self._last_steps

    def steps_for(self, client: ClientData) -> int:
        if self.params.local_epochs is None:
            return self.params.local_steps
        return max(1, math.ceil(self.params.local_epochs * client.num_examples / client.batch_size))

    def _optimizer(self) -> torch.optim.Optimizer:
        p = self.params
        if p.optimizer == "adamw":
            return torch.optim.AdamW(self.trainable, lr=p.lr, weight_decay=p.weight_decay)
        return torch.optim.SGD(self.trainable, lr=p.lr, weight_decay=p.weight_decay)

    @torch.no_grad()
    def _load(self, weights: list[torch.Tensor]) -> None:
        for p, w in zip(self.trainable, weights, strict=True):
            p.copy_(w)

    def client_update(self, round_idx: int, client: ClientData) -> Payload:
        model = self.ctx.model
        model.train()
        opt = self._optimizer()  # fresh optimiser state per client and round, as in FedAvg
        self._last_steps = self.steps_for(client)
        for _ in range(self._last_steps):
            batch = next(client.batches)
            opt.zero_grad(set_to_none=True)
            loss = self.ctx.loss(batch)
            loss.backward()
            if self.params.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(self.trainable, self.params.max_grad_norm)
            opt.step()
        opt.zero_grad(set_to_none=True)
        del opt
        with torch.no_grad():
            update = flatten([p - g for p, g in zip(self.trainable, self.global_weights, strict=True)])
            update = update.to(self.wire_dtype)
        self._load(self.global_weights)
        model.eval()
        return {"update": update, "num_examples": torch.tensor([client.num_examples], dtype=torch.uint32)}

    def _weights(self, payloads: list[Payload]) -> list[float]:
        if self.params.weighting == "examples":
            return [float(pl["num_examples"].item()) for pl in payloads]
        return [1.0] * len(payloads)

    def formula_bits(self, d: int, n: int) -> tuple[int, int]:
        # d update values + uint32 example count up; the d global weights down (fp32: 32 bits a value).
        bits = torch.finfo(self.wire_dtype).bits
        return bits * d + 32, bits * d

    @classmethod
    def payload_kinds(cls, params: FedAvgParams) -> dict[str, str]:
        return {"update": "dense", "num_examples": "count"}

    def payload_spec(self, round_idx: int, client_id: int) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        d = sum(p.numel() for p in self.trainable)
        return {"update": ((d,), self.wire_dtype), "num_examples": ((1,), torch.uint32)}

    def combine_updates(self, payloads: list[Payload]) -> torch.Tensor:
        """The server's update from the clients' updates: the example-weighted mean (FedAvg), or the
        configured robust rule on the stacked updates (which ignores the self-reported sizes)."""
        updates = [pl["update"] for pl in payloads]
        agg = self.ctx.aggregator
        if agg.name == "mean":
            # Streamed, not stacked: n full-size updates side by side would double the peak memory.
            return weighted_mean(updates, self._weights(payloads))
        stacked = torch.stack(updates).to(accumulator_dtype(updates[0].dtype))
        return combine(agg.name, "dense", stacked, trim=agg.trim, f=agg.f, m=agg.m)

    def aggregate(self, round_idx: int, payloads: list[Payload]) -> Payload:
        delta = self.combine_updates(payloads)
        with torch.no_grad():
            for g, d in zip(self.global_weights, unflatten(delta, self.global_weights), strict=True):
                g.add_(d)
        self._load(self.global_weights)
        # The next cohort downloads the new global model: d floats.
        return {"weights": flatten(self.global_weights)}
