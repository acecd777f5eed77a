"""The first-order client loop, written once for every method whose clients train with gradients.

A client starts from the global weights, runs its optimiser for some steps on its own batches, and
the method reads what it needs from the trained weights (FedAvg: the update; Ferret: the update's
projections); then the working model is reset from one snapshot of the global weights. How a client
trains is a ``LocalTraining``: the optimiser, its learning rate and weight decay, and the gradient
clip, each method stating its own (FedAvg from its params; Ferret as its official code runs), so the
clip is a visible choice and recorded in every run's ``describe()``.

Optimiser state is fresh for every client and round (FedAvg's definition; nothing of it crosses the
wire). In reduced precision there are no float32 master weights: torch's AdamW runs on bfloat16
parameters, and a step smaller than half an ulp of a weight leaves it unchanged.
"""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from zofo.core.zo import trainable_parameters
from zofo.methods.base import ClientData, FederatedMethod


@dataclass(frozen=True)
class LocalTraining:
    """How a first-order client trains in a round."""

    lr: float
    optimizer: Literal["adamw", "sgd"]
    weight_decay: float = 0.0
    # Each step's gradient is clipped to this global norm before the optimiser step; None: never.
    max_grad_norm: float | None = None

    def optimizer_for(self, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        if self.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        return torch.optim.SGD(params, lr=self.lr, weight_decay=self.weight_decay)

    def describe(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class FirstOrderMethod(FederatedMethod):
    """A method whose clients run ``LocalTraining`` from a snapshot of the global weights."""

    family: ClassVar[str] = "fo"
    state_attrs: ClassVar[tuple[str, ...]] = ("global_weights",)

    @abstractmethod
    def local_training(self) -> LocalTraining:
        """The optimiser, learning rate, weight decay and gradient clip of this method's clients."""

    def setup(self) -> None:
        self.trainable = trainable_parameters(self.ctx.model)
        self.global_weights = [p.detach().clone() for p in self.trainable]

    def train_locally(self, client: ClientData, steps: int) -> None:
        """``steps`` optimiser steps on the working model, one batch each; the model is left in train
        mode at the client's trained weights (``reset_to_global`` undoes both)."""
        training = self.local_training()
        self.ctx.model.train()
        opt = training.optimizer_for(self.trainable)
        for _ in range(steps):
            batch = next(client.batches)
            opt.zero_grad(set_to_none=True)
            self.ctx.loss(batch).backward()
            if training.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(self.trainable, training.max_grad_norm)
            opt.step()
        opt.zero_grad(set_to_none=True)

    @torch.no_grad()
    def load_weights(self, weights: list[torch.Tensor]) -> None:
        for p, w in zip(self.trainable, weights, strict=True):
            p.copy_(w)

    def reset_to_global(self) -> None:
        """The working model holds the global weights again, in eval mode."""
        self.load_weights(self.global_weights)
        self.ctx.model.eval()

    def describe(self) -> dict[str, Any]:
        return {"local_training": self.local_training().describe()}
