"""FedAvg-LoRA (FedIT / OpenFedLLM): FedAvg over LoRA adapters only; the base weights never move.

The model gets peft LoRA adapters (rank r, alpha, dropout, on ``target_modules``); only the adapter
matrices are trainable, so only they travel: the uplink is the adapter update plus the example count,
the downlink the averaged adapters.

Averaging. ``averaging: separate`` (default, FedIT's and OpenFedLLM's choice) averages A and B on their
own, which is inexact: the model the clients trained, W0 + s B_i A_i, averages to W0 + s mean(B_i A_i),
and mean(B_i A_i) = mean(B) mean(A) + mean((B_i - B)(A_i - A)) differs by the clients' covariance.
``averaging: exact`` keeps the averaged A and B as the next adapters and folds the residual
s (mean(B_i A_i) - mean(B) mean(A)) into the frozen base weight of each adapted layer (the residual
form of exact aggregation, as in FedEx-LoRA, arXiv 2410.09432): the global model then equals the average
of the clients' models exactly. The price is on the downlink, which now also carries one dense
out x in residual per adapted layer; it is counted. The uplink is the same adapter update.

The adapters are initialised from a generator derived from the run seed (peft itself would draw A
from the global RNG), so every run starts from the same adapters for the same seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

from zofo.core.config import ZOConfig, positive
from zofo.core.errors import ConfigError
from zofo.core.registry import METHODS
from zofo.core.seeds import derive
from zofo.methods.base import Payload
from zofo.methods.fedavg import FedAvg, FedAvgParams, flatten, unflatten


@dataclass(frozen=True)
class FedAvgLoRAParams(FedAvgParams):
    lr: float = 1e-4  # adapters start at B = 0 and tolerate a larger lr than full fine-tuning
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    # Module names to adapt: q_proj / v_proj for Llama-style models, query / value for BERT.
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    # "separate": mean of A and mean of B (FedIT); "exact": the global model is the mean of the clients'
    # models, the residual folded into the base weights and broadcast (see the module docstring).
    averaging: Literal["separate", "exact"] = "separate"

    def __post_init__(self) -> None:
        super().__post_init__()
        positive("method.params.r", self.r)
        positive("method.params.alpha", self.alpha)
        if not 0 <= self.dropout < 1:
            raise ConfigError("method.params.dropout", self.dropout, "a number in [0, 1)")


@METHODS.register("fedavg-lora")
class FedAvgLoRA(FedAvg):
    Params = FedAvgLoRAParams
    family = "fo"
    reference = "FedIT (Zhang et al., ICASSP 2024) / OpenFedLLM; LoRA via peft"
    # exact averaging moves the base weights: the accumulated residuals are state a resume must restore.
    state_attrs = (*FedAvg.state_attrs, "residuals")

    def setup(self) -> None:
        # peft is imported here, not at module level: the registry imports every method to check names,
        # and peft's import (it loads transformers model classes) took seconds of every run's start-up.
        from peft import LoraConfig, inject_adapter_in_model

        p = self.params
        config = LoraConfig(
            r=p.r, lora_alpha=p.alpha, lora_dropout=p.dropout, target_modules=list(p.target_modules)
        )
        model = self.ctx.model
        names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
        missing = [t for t in p.target_modules if t not in names]
        if missing:
            raise ConfigError(
                "method.params.target_modules",
                list(p.target_modules),
                f"module names of this model, e.g. {sorted(n for n in names if n)[:12]}",
            )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive(self.ctx.seed, "lora-init"))
            inject_adapter_in_model(config, model)
        for name, param in model.named_parameters():
            param.requires_grad_("lora_" in name)
        super().setup()
        self.layers = self._adapted_layers()
        # The sum of every residual folded into each layer's base weight so far (exact averaging).
        exact = p.averaging == "exact"
        self.residuals = [torch.zeros_like(base) for _, _, base, _ in self.layers] if exact else []

    @classmethod
    def memory_factor(cls, params: Any, zo: ZOConfig, cohort_size: int) -> float:
        # The frozen model plus a margin for the adapters, their gradients, optimiser state and the
        # clients' adapter updates (r << width: a few percent); exact averaging also keeps a residual
        # the size of every adapted base weight (at most the model).
        return 1.1 + (1.0 if params.averaging == "exact" else 0.0)

    @classmethod
    def aggregators(cls, params: FedAvgLoRAParams) -> tuple[str, ...]:
        # Exact averaging is the mean of the clients' models by definition; a robust rule would need a
        # robust "mean of products", which no rule here defines.
        return ("mean",) if params.averaging == "exact" else super().aggregators(params)

    def _adapted_layers(self) -> list[tuple[int, int, torch.Tensor, float]]:
        """(index of A in trainable, index of B, the base weight, scaling) per adapted layer."""
        from peft.tuners.lora import LoraLayer

        index = {id(t): i for i, t in enumerate(self.trainable)}
        out = []
        for name, module in self.ctx.model.named_modules():
            if not isinstance(module, LoraLayer):
                continue
            if self.params.averaging == "exact" and getattr(module, "fan_in_fan_out", False):
                raise ConfigError(
                    "method.params.averaging",
                    "exact",
                    f"separate for this model: {name} stores its weight transposed (fan_in_fan_out)",
                )
            a, b = module.lora_A["default"].weight, module.lora_B["default"].weight
            base = module.get_base_layer().weight
            out.append((index[id(a)], index[id(b)], base, module.scaling["default"]))
        return out

    def aggregate(self, round_idx: int, payloads: list[Payload]) -> Payload:
        if self.params.averaging == "separate":
            return super().aggregate(round_idx, payloads)
        # The clients' adapters, rebuilt from the global adapters and their updates (before the mean
        # below replaces the global adapters).
        clients = []
        for pl in payloads:
            updates = unflatten(pl["update"], self.global_weights)
            clients.append([g + u for g, u in zip(self.global_weights, updates, strict=True)])
        weights = self._weights(payloads)
        total = float(sum(weights))
        broadcast = super().aggregate(round_idx, payloads)
        residuals = []
        with torch.no_grad():
            for slot, (ia, ib, base, scaling) in enumerate(self.layers):
                mean_of_products = sum(
                    (w / total) * (c[ib] @ c[ia]) for w, c in zip(weights, clients, strict=True)
                )
                residual = scaling * (mean_of_products - self.global_weights[ib] @ self.global_weights[ia])
                base.add_(residual)
                self.residuals[slot].add_(residual)
                residuals.append(residual)
        broadcast["residuals"] = flatten(residuals).to(self.wire_dtype)
        return broadcast

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        # The base weights are w0 again after a restart: fold the residuals broadcast so far back in.
        if self.params.averaging != "exact":
            return
        with torch.no_grad():
            for (_, _, base, _), residual in zip(self.layers, self.residuals, strict=True):
                base.add_(residual)

    def formula_bits(self, d: int, n: int) -> tuple[int, int]:
        # d = adapter parameters; exact averaging also broadcasts one dense residual per adapted layer.
        bits = torch.finfo(self.wire_dtype).bits
        return bits * d + 32, bits * (d + self._residual_size())

    def _residual_size(self) -> int:
        """Floats of the residuals broadcast per round: every adapted base weight under exact averaging."""
        return sum(base.numel() for _, _, base, _ in self.layers) if self.params.averaging == "exact" else 0

    def describe(self) -> dict:
        exact = self.params.averaging == "exact"
        return {
            **super().describe(),
            "lora_averaging": "exact (residual in the base)" if exact else "A and B separately",
            "adapter_parameters": sum(t.numel() for t in self.trainable),
            "residual_parameters": self._residual_size(),
        }
