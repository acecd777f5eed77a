"""One-shot federated fine-tuning (arXiv 2412.04650): one round, every client, E local epochs.

Every client starts from the pretrained w0, trains ``local_epochs`` passes over its own data and
uploads its update once; the server takes the example-weighted mean and stops. It is FedAvg with
exactly one communication round and full participation, so it shares FedAvg's code; the comparison
the paper makes is against multi-round FedAvg of R rounds x E/R epochs at equal local compute
(``fedavg`` with ``local_epochs: E/R`` and ``rounds: R``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from zofo.core.errors import ConfigError
from zofo.core.registry import METHODS
from zofo.methods.fedavg import FedAvg, FedAvgParams


@dataclass(frozen=True)
class OneShotParams(FedAvgParams):
    local_epochs: float | None = 1.0


@METHODS.register("oneshot")
class OneShot(FedAvg):
    Params = OneShotParams
    family = "fo"
    reference = "One-shot federated fine-tuning, arXiv 2412.04650"
    max_rounds: ClassVar[int | None] = 1
    # A whole epoch of the tiny test shards is hundreds of steps; a twentieth shows the same.
    test_params = {"lr": 1e-3, "local_epochs": 0.05}

    def setup(self) -> None:
        if self.ctx.cohort_size != self.ctx.num_clients:
            raise ConfigError(
                "federation.clients_per_round",
                self.ctx.cohort_size,
                f"null or {self.ctx.num_clients}: every client takes part in the one round",
            )
        super().setup()

    def describe(self) -> dict:
        return {**super().describe(), "rounds": 1, "participation": "all clients"}
