"""The method interface: what a federated method must provide to the one round loop.

The split follows pfl-research: the *algorithm* (this interface and its subclasses) says what a
client computes and how the server combines it; the *framework* (``zofo.engine.loop``) samples
clients, moves payloads through the wire codec, counts bits, evaluates and logs. A method never
re-implements the loop.

Simulation keeps one working model: clients run in turn on it, and each ``client_update`` must leave
the model holding the global weights it started from (ZO methods restore after perturbing; FO methods
reload a snapshot), so memory stays near one model rather than one per client.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from zofo.core.config import AggregatorConfig, ZOConfig
from zofo.core.device import MEMORY_FACTORS
from zofo.robust.aggregators import AGGREGATORS

# A payload is what crosses the wire: named tensors whose dtype is their wire type (bool = 1 bit).
Payload = dict[str, torch.Tensor]


@dataclass
class ClientData:
    """One client's view of its local data in a round."""

    client_id: int
    num_examples: int
    # Yields collated training batches forever, from this client's own shard, in an order drawn from a
    # generator derived from (run seed, client, round): reproducible and independent of other clients.
    batches: Iterator[Mapping[str, torch.Tensor]]
    # Examples per batch, so epoch-based methods can turn epochs into steps.
    batch_size: int = 1


@dataclass
class RunContext:
    """What a method may use, handed over by the engine once per run."""

    model: torch.nn.Module
    # loss(batch) -> scalar tensor on the current working model (with autograd if grad is enabled)
    loss: Callable[[Mapping[str, torch.Tensor]], torch.Tensor]
    zo: ZOConfig
    seed: int
    num_clients: int
    cohort_size: int
    # How the server combines the clients' numbers (config ``aggregator``); "mean" = the method's own rule.
    aggregator: AggregatorConfig = field(default_factory=AggregatorConfig)


class FederatedMethod(ABC):
    """Base class of all methods; subclasses register with ``@METHODS.register("name")``."""

    Params: ClassVar[type]
    # "zo" or "fo": which family the tables and figures place the method in.
    family: ClassVar[str]
    # The paper or code the default behaviour follows; stored in every run's metadata.
    reference: ClassVar[str] = ""
    # Communication rounds the method is defined for (one-shot FL: 1); None = any number.
    max_rounds: ClassVar[int | None] = None
    # Attributes beyond the model's trainable weights that later rounds depend on: saved in checkpoints
    # and restored on resume (a method that forgets one fails the resume test for every method).
    state_attrs: ClassVar[tuple[str, ...]] = ()
    # Whether checkpoints hold the trainable weights. A method whose global model is a deterministic
    # function of w0 and what it broadcast (FedKSeed: the pool changes) stores that instead and
    # rebuilds the weights in load_state_dict: kilobytes instead of a model.
    checkpoint_weights: ClassVar[bool] = True
    # Whether client_update may leave the model held along a perturbation the round's clients share
    # (FeedSign with zo.fuse), for the next client or the server to absorb; end_round removes what is
    # left. The engine reads no weights between a round's clients either way.
    holds_between_clients: ClassVar[bool] = False

    def __init__(self, params: Any, ctx: RunContext):
        self.params = params
        self.ctx = ctx

    @abstractmethod
    def setup(self) -> None:
        """Create the server state at round 0 from ``ctx.model`` (the pretrained weights)."""

    @abstractmethod
    def client_update(self, round_idx: int, client: ClientData) -> Payload:
        """One client's work in a round; returns its uplink payload and leaves the model unchanged
        (or, if ``holds_between_clients``, held along the round's shared perturbation)."""

    @abstractmethod
    def aggregate(self, round_idx: int, payloads: list[Payload]) -> Payload:
        """Combine the (decoded) uplink payloads, update the global model in ``ctx.model``, and return
        the downlink payload that every client of the round receives."""

    def end_round(self, round_idx: int) -> None:
        """Called after every round's aggregation, also when nothing valid arrived and ``aggregate``
        was skipped: the model must hold the global weights afterwards, ready to be evaluated."""
        return None

    def local_steps(self) -> int:
        """Local optimisation steps (gradient or ZO estimates) of the client that just ran; the engine
        asks after every ``client_update``."""
        return 1

    def state_dict(self) -> dict[str, Any]:
        return {name: copy.deepcopy(getattr(self, name)) for name in self.state_attrs}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for name in self.state_attrs:
            setattr(self, name, state[name])

    def describe(self) -> dict[str, Any]:
        """Variant information recorded in the run metadata (e.g. tie rules, paper vs code)."""
        return {}

    # ---- robustness: what the server knows about honest payloads and how it may combine them ----

    @classmethod
    def payload_kinds(cls, params: Any) -> dict[str, str]:
        """Kind of each uplink field: "dense" (a model update), "scalar" (projected gradients or
        coordinates), "sign", "seed", or anything else (counts, structure), which attacks leave alone."""
        raise NotImplementedError(f"{cls.__name__} must declare payload_kinds")

    @classmethod
    def aggregators(cls, params: Any) -> tuple[str, ...]:
        """Names of the aggregation rules (zofo.robust.aggregators) the server can combine this method's
        clients with; "mean" is the method's own rule. Default: every rule for its first dense or scalar
        field."""
        kinds = [k for k in cls.payload_kinds(params).values() if k in ("dense", "scalar")]
        return tuple(n for n, spec in AGGREGATORS.items() if kinds and kinds[0] in spec.kinds)

    def payload_spec(self, round_idx: int, client_id: int) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        """The fields an honest uplink of this client in this round has: name -> (shape, dtype). The
        server rejects anything else (zofo.robust.setting.validate_payload) before aggregating."""
        raise NotImplementedError(f"{type(self).__name__} must declare payload_spec")

    def check_payload(self, round_idx: int, client_id: int, payload: Payload) -> str | None:
        """Method-specific reasons to reject a well-formed payload (e.g. a seed the server did not
        expect); None = accept."""
        return None

    def drop_client(self, round_idx: int, client_id: int) -> None:
        """The server rejected this client's payload: forget whatever ``client_update`` recorded for it."""
        return None

    @classmethod
    def memory_factor(cls, params: Any, zo: ZOConfig, cohort_size: int) -> float:
        """Device memory a run needs, in multiples of the model's weights (in their dtype): the fit
        check (zofo.core.device.check_memory) refuses a run whose weights times this exceed the free memory.
        Default: the family's (zofo.core.device.MEMORY_FACTORS); a method that keeps more model-sized
        tensors (snapshots, cached directions, clients' updates) adds them."""
        return MEMORY_FACTORS[cls.family]

    def formula_bits(self, d: int, n: int) -> tuple[int, int] | None:
        """Bits per round the method's definition says it sends (paper and code): (uplink of one
        client, downlink to each receiving client), for d trainable parameters and n clients in the
        round, after ``setup``. Computed from parameters and sizes, never from payloads: the engine
        records it and the communication table checks the counted bits against it. None = no formula."""
        return None
