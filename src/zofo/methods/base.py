"""The method interface: what a federated method must provide to the one round loop.

The split follows pfl-research: the *algorithm* (this interface and its subclasses) says what a
client computes and how the server combines it; the *framework* (``zofo.engine.loop``) samples
clients, moves payloads through the wire codec, counts bits, evaluates and logs. A method never
re-implements the loop.

Simulation keeps one working model: clients run in turn on it, and each ``client_update`` must leave
the model holding the global weights it started from (ZO methods restore after perturbing; FO methods
reload a snapshot), so memory stays near one model rather than one per client.

A method is one file: a frozen ``Params`` dataclass and a subclass of ``FederatedMethod`` registered
with ``@METHODS.register(name)``. Everything else about it is read from the class: what its uplink
holds (``uplink``: each field's kind, shape and dtype, from which the engine derives the kinds attacks
touch and the shapes the server accepts), the bits its paper says it sends (``formula_bits``), and the
settings the test suites run it with (``test_params``). ``declaration_problems`` lists what a class
lacks (the contract suite reports it), and reading a missing ``uplink`` or ``test_params`` raises
``MethodDeclarationError`` naming the class and what to add. The server's choice between the method's
own rule and a configured robust one is ``combine_clients``, here once for every method; what a client
returning after missed rounds must download first is ``catch_up``, counted by the engine. Methods
outside this package join through ``zofo.core.registry`` (an entry point or ``ZOFO_METHOD_PACKAGES``).
"""

from __future__ import annotations

import copy
import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import torch

from zofo.core.config import AggregatorConfig, ZOConfig
from zofo.core.device import MEMORY_FACTORS
from zofo.core.errors import ZofoError
from zofo.robust.aggregators import AGGREGATORS, combine
from zofo.robust.setting import selection_weights

# A payload is what crosses the wire: named tensors whose dtype is their wire type (bool = 1 bit).
Payload = dict[str, torch.Tensor]
R = TypeVar("R")

# What a payload field is, for attacks and aggregation rules: "dense" (a model-sized update), "scalar"
# (projected gradients or coordinates), "sign", "seed"; "count" and "structure" (example counts, block
# boundaries) are numbers no attack touches and no rule combines.
FIELD_KINDS = ("dense", "scalar", "sign", "seed", "count", "structure")


class MethodDeclarationError(ZofoError, TypeError):
    """A method class lacks something the engine or the test suites read from it."""

    def __init__(self, cls: type, what: str, how: str):
        self.cls, self.what = cls, what
        super().__init__(f"method class {cls.__module__}.{cls.__qualname__} declares no {what}: {how}")


@dataclass(frozen=True)
class Field:
    """One field of a method's uplink payload: its kind (``FIELD_KINDS``), shape and wire dtype.

    A shape entry or the dtype may be a name instead of a value: it is read from the method instance
    after ``setup`` (e.g. ``"d"``, ``"wire_dtype"``), else from its Params (e.g. ``"K"``). ``when``, if
    given, says for which Params the field is sent at all (e.g. an example count only when clients are
    weighted by their data)."""

    kind: str
    shape: tuple[int | str, ...]
    dtype: torch.dtype | str
    when: Callable[[Any], bool] | None = None

    def __post_init__(self) -> None:
        if self.kind not in FIELD_KINDS:
            raise ValueError(f"Field kind {self.kind!r}; allowed: one of {list(FIELD_KINDS)}")


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
    # losses(batches) -> one scalar per batch on the current weights, in one forward where the objective
    # can stack them (``Objective.losses``); None: ``loss`` once per batch.
    losses: Callable[[Sequence[Mapping[str, torch.Tensor]]], list[torch.Tensor]] | None = None

    def batch_losses(self, batches: Sequence[Mapping[str, torch.Tensor]]) -> list[torch.Tensor]:
        """Each batch's loss on the current working model (equal to ``loss`` per batch up to rounding)."""
        if self.losses is None:
            return [self.loss(b) for b in batches]
        return self.losses(batches)


class FederatedMethod(ABC):
    """Base class of all methods; subclasses register with ``@METHODS.register("name")``."""

    Params: ClassVar[type]
    # "zo" or "fo": which family the tables and figures place the method in.
    family: ClassVar[str]
    # The paper or code the default behaviour follows; stored in every run's metadata.
    reference: ClassVar[str] = ""
    # The uplink payload, field by field: name -> Field(kind, shape, dtype). The one statement of what an
    # honest client sends: the kinds attacks touch (payload_kinds) and the shapes and dtypes the server
    # accepts (payload_spec) are read from it.
    uplink: ClassVar[Mapping[str, Field]]
    # Params overrides that keep a run on the test suite's tiny model to seconds (a small lr, few local
    # steps, a small K): every suite that runs all methods (contract, determinism, resume, robustness)
    # runs this method with them.
    test_params: ClassVar[Mapping[str, Any]]
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

    def __new__(cls, params: Any, ctx: RunContext) -> FederatedMethod:
        # A method whose protocols differ enough to be separate classes (Ferret's paper and official-code
        # variants) is registered once and built as the class its params select.
        impl = cls.implementation(params)
        if not (isinstance(impl, type) and issubclass(impl, cls)):
            raise TypeError(
                f"{cls.__name__}.implementation returned {impl!r}, not a subclass of {cls.__name__}"
            )
        return super().__new__(impl)

    def __init__(self, params: Any, ctx: RunContext):
        self.params = params
        self.ctx = ctx

    @classmethod
    def implementation(cls, params: Any) -> type[FederatedMethod]:
        """The class that runs ``params``: the registered class itself, or one of its subclasses when a
        parameter selects between protocols (the registered name, its Params and its config stay one)."""
        return cls

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

    def client_updates(
        self,
        round_idx: int,
        clients: Sequence[ClientData],
        isolated: Callable[[ClientData], AbstractContextManager[Any]],
    ) -> list[tuple[Payload, int]]:
        """Every cohort client's (payload, local steps), in cohort order. By default each client runs
        ``client_update`` in turn inside ``isolated(client)`` (its own generator for dropout). A method
        whose clients evaluate the same weights overrides this to share their forward passes
        (simulation only: each payload must be what the client's own ``client_update`` would send, up
        to float rounding)."""
        out = []
        for client in clients:
            with isolated(client):
                payload = self.client_update(round_idx, client)
            out.append((payload, self.local_steps()))
        return out

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

    def catch_up(self, round_idx: int, client_id: int) -> Payload | None:
        """What client ``client_id`` must download before it can compute in round ``round_idx``, beyond
        the broadcasts it received, as the message a server would send it; None: nothing.

        The engine asks for every client of the round's cohort, before its ``client_update``, and counts
        the message through the wire codec in the round's downlink (``bits_down``; ``bits_catch_up``
        is that part alone). Asking changes nothing: ``client_update`` is where a method notes that
        the client is synced. The engine counts each round's broadcast once per client of that round,
        so a client that took part in the previous round holds the current global model; one absent
        since round t needs what rounds t+1 .. round_idx-1 changed. Every client holds the pretrained
        weights w0 from the start (no method counts their distribution), so a client's first round is a
        catch-up from round 0, and nothing in round 1: under full participation nothing is ever caught up.

        Default None: right for a method whose broadcast is its whole global state (FedAvg's weights,
        FedAvg-LoRA's averaged adapters with separate averaging, one-shot's single round), which a
        returning client receives in full in its next broadcast. A method whose broadcast is a change
        that every party applies to its own copy (FeedSign's vote, ZO-FedSGD's pairs, FedKSeed's pool
        change) must return what the client missed (``BroadcastLog`` keeps it for replayed broadcasts).
        Ferret's broadcasts and FedAvg-LoRA's exact-averaging residuals are such changes and declare no
        catch-up: under partial participation their downlink leaves it out.
        """
        return None

    def formula_bits(self, d: int, n: int) -> tuple[int, int] | None:
        """Bits per round the method's definition says it sends (paper and code): (uplink of one
        client, downlink to each receiving client), for d trainable parameters and n clients in the
        round, after ``setup``. Computed from parameters and sizes, never from payloads: the engine
        records it, the communication table and the contract tests check the counted bits against it.
        Every method states one; None (this default) leaves the run without a check."""
        return None

    # ---- the uplink, derived from ``uplink`` ----

    @classmethod
    def uplink_fields(cls, params: Any) -> dict[str, Field]:
        """The fields a client of a run with ``params`` sends (``uplink`` without those whose ``when``
        excludes them), as the class that runs those params declares them."""
        impl = cls.implementation(params)
        declared = getattr(impl, "uplink", None)
        if declared is None:
            raise MethodDeclarationError(
                impl, "uplink", "set uplink = {field name: Field(kind, shape, dtype)} on the class"
            )
        return {k: f for k, f in declared.items() if f.when is None or f.when(params)}

    @classmethod
    def payload_kinds(cls, params: Any) -> dict[str, str]:
        """Kind of each uplink field (``FIELD_KINDS``): what attacks may change and rules may combine."""
        return {name: f.kind for name, f in cls.uplink_fields(params).items()}

    def payload_spec(self, round_idx: int, client_id: int) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        """The fields an honest uplink of this client in this round has: name -> (shape, dtype). The
        server rejects anything else (zofo.robust.setting.validate_payload) before aggregating."""
        return {
            name: (tuple(self._resolve(x) for x in f.shape), self._resolve(f.dtype))
            for name, f in self.uplink_fields(self.params).items()
        }

    def _resolve(self, value: Any) -> Any:
        # A name in a Field: an attribute of the set-up method (its sizes, its wire dtype), else a param.
        if not isinstance(value, str):
            return value
        for source in (self, self.params):
            if hasattr(source, value):
                return getattr(source, value)
        raise MethodDeclarationError(
            type(self), f"attribute or param {value!r}", "a Field of its uplink names it as a shape or dtype"
        )

    @classmethod
    def aggregators(cls, params: Any) -> tuple[str, ...]:
        """Names of the aggregation rules (zofo.robust.aggregators) the server can combine this method's
        clients with; "mean" is the method's own rule. Default: every rule for its first dense or scalar
        field."""
        kinds = [k for k in cls.payload_kinds(params).values() if k in ("dense", "scalar")]
        return tuple(n for n, spec in AGGREGATORS.items() if kinds and kinds[0] in spec.kinds)

    def check_payload(self, round_idx: int, client_id: int, payload: Payload) -> str | None:
        """Method-specific reasons to reject a well-formed payload (e.g. a seed the server did not
        expect); None = accept."""
        return None

    def drop_client(self, round_idx: int, client_id: int) -> None:
        """The server rejected this client's payload: forget whatever ``client_update`` recorded for it."""
        return None

    # ---- the server's rule: the method's own, or the configured robust one ----

    def combine_clients(
        self,
        kind: str,
        own: Callable[[], R],
        rows: Callable[[], torch.Tensor],
        select: Callable[[torch.Tensor], R] | None = None,
    ) -> R | torch.Tensor:
        """The server's combination of its clients' numbers, as ``aggregator.name`` says. "mean" is the
        method's own rule: ``own()``, computed however the method defines it (weighted by data sizes,
        streamed client by client). Any other name is a robust rule applied to ``rows()``, one row per
        client (weights ignored: a client's reported data size would buy an attacker influence):
        ``combine`` over rows aligned coordinate by coordinate, or, with ``select``, the rule's weights
        over clients whose scalars each lie on their own direction (zofo.robust.setting.
        selection_weights), handed to ``select``. Both are called only when needed."""
        agg = self.ctx.aggregator
        if agg.name == "mean":
            return own()
        if select is not None:
            return select(selection_weights(agg.name, rows(), agg.trim))
        return combine(agg.name, kind, rows(), trim=agg.trim, f=agg.f, m=agg.m)

    @classmethod
    def memory_factor(cls, params: Any, zo: ZOConfig, cohort_size: int) -> float:
        """Device memory a run needs, in multiples of the model's weights (in their dtype): the fit
        check (zofo.core.device.check_memory) refuses a run whose weights times this exceed the free memory.
        Default: the family's (zofo.core.device.MEMORY_FACTORS); a method that keeps more model-sized
        tensors (snapshots, cached directions, clients' updates) adds them."""
        return MEMORY_FACTORS[cls.family]


class BroadcastLog:
    """The broadcasts a returning client missed, for a method whose global model is w0 plus every
    round's broadcast applied in order (FeedSign's votes, ZO-FedSGD's (seed, scalar) pairs): its
    catch-up is those broadcasts, concatenated field by field in round order. Which rounds and how
    many entries each holds are protocol knowledge, as every payload's shape is (the codec sends no
    header). A method keeps one as state (``state_attrs``), calls ``joined`` from ``client_update``
    and ``sent`` from ``aggregate``, and returns ``missed`` from ``catch_up``."""

    def __init__(self, num_clients: int):
        self.num_clients = num_clients
        # Round -> its broadcast (CPU copies), kept while some client has not received it.
        self.broadcasts: dict[int, Payload] = {}
        # Client -> the last round whose broadcast it received (absent: 0, i.e. w0).
        self.last_round: dict[int, int] = {}

    def missed(self, round_idx: int, client_id: int) -> Payload | None:
        """The broadcasts of the rounds after the client's last one and before ``round_idx``."""
        last = self.last_round.get(client_id, 0)
        rounds = [r for r in sorted(self.broadcasts) if last < r < round_idx]
        if not rounds:
            return None
        names = self.broadcasts[rounds[0]]
        return {name: torch.cat([self.broadcasts[r][name].reshape(-1) for r in rounds]) for name in names}

    def joined(self, round_idx: int, client_id: int) -> None:
        """The client takes part in ``round_idx``: it caught up and receives that round's broadcast
        (also when the server rejects its payload)."""
        self.last_round[client_id] = round_idx

    def sent(self, round_idx: int, broadcast: Payload) -> None:
        """Record the round's broadcast; forget those every client has received."""
        self.broadcasts[round_idx] = {k: v.detach().to("cpu", copy=True) for k, v in broadcast.items()}
        oldest = min(self.last_round.get(k, 0) for k in range(self.num_clients))
        for r in [r for r in self.broadcasts if r <= oldest]:
            del self.broadcasts[r]


def declaration_problems(cls: type[FederatedMethod]) -> list[str]:
    """What ``cls`` lacks of the declarations the engine and the test suites read from a method class,
    one line each (empty: nothing). Checked for the default Params; a class chosen by other params
    (``implementation``) is checked when a run or a test builds it."""
    problems = []
    params_cls = getattr(cls, "Params", None)
    params = None
    if not (isinstance(params_cls, type) and dataclasses.is_dataclass(params_cls)):
        problems.append("Params: a frozen dataclass of the method's settings")
    elif not params_cls.__dataclass_params__.frozen:
        problems.append(f"Params: {params_cls.__name__} must be frozen (@dataclass(frozen=True))")
    else:
        try:
            params = params_cls()
        except TypeError as e:
            problems.append(f"Params: {params_cls.__name__}() must construct from defaults ({e})")
    if getattr(cls, "family", None) not in ("zo", "fo"):
        problems.append('family: "zo" or "fo"')
    if not getattr(cls, "reference", ""):
        problems.append("reference: the paper or code the method follows")
    if not isinstance(getattr(cls, "test_params", None), Mapping):
        problems.append("test_params: a mapping of Params overrides that keep a tiny-model run to seconds")
    if params is not None:
        impl = cls.implementation(params)
        if getattr(impl, "uplink", None) is None:
            problems.append("uplink: {field name: Field(kind, shape, dtype)}")
        if impl.formula_bits is FederatedMethod.formula_bits:
            problems.append("formula_bits(d, n): the (uplink, downlink) bits its paper says it sends")
    return problems


def params_for_tests(cls: type[FederatedMethod]) -> dict[str, Any]:
    """The Params overrides the test suites run ``cls`` with; a clear error if it declares none."""
    declared = getattr(cls, "test_params", None)
    if not isinstance(declared, Mapping):
        raise MethodDeclarationError(
            cls, "test_params", "set test_params = {param: value} (a small lr, few steps) on the class"
        )
    return dict(declared)
