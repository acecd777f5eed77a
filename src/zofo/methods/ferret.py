"""Ferret (Shu et al., ICML 2025, arXiv 2409.06277; official code: allen4747/Ferret).

First-order local training, then the local update is projected onto random directions that the server
can regenerate from seeds, so a client uploads a few hundred scalars instead of d floats:

    client i: T optimiser steps (SGD or AdamW) from the global w  ->  delta = w - w_T
              per block l (d_l parameters): K_l directions v_{l,j}, iid N(0,1) truncated to +-c_l,
              c_l = 1/sqrt(d_l);  gamma_{l,j} = v_{l,j} . delta_l / (rho_l K_l)
    server:   w -= slr * sum_i omega_i sum_l sum_j gamma_{i,l,j} v_{i,l,j}

rho_l = E[v^2] of the truncated normal, exactly: 1 - 2 c phi(c) / (2 Phi(c) - 1), about 1/(3 d_l).
Since E[v v^T] = rho I, the reconstruction is unbiased for delta_l, whatever K_l >= 1 is, as long as
K_l does not depend on the directions (it depends on delta only). omega_i = 1/n ("uniform", the official
script's --equal_weight) or data sizes ("examples").

Blocks. "tensor": one block per trainable tensor. "packed" (the official code's grouping): consecutive
tensors, in parameters() order, are packed until the next one would push the block past
int(0.9 * median tensor size); a tensor larger than that is a block of its own. Both ends build the
blocks from the architecture, so they cost no bits.

Directions. Direction j of block l for seed s is drawn from its own key, ``derive(s, l, j)``, by the
inverse CDF: u ~ U[-erf(c/sqrt2), erf(c/sqrt2)], v = sqrt2 * erfinv(u), clamped to +-c against float
rounding. This is an exact sampler of the truncation (torch 2.13's ``trunc_normal_`` samples the same
law by rejection, 5x slower on CPU, and Ferret draws about K x d numbers per client). One key per
direction lets the server regenerate any direction on its own, one d_l-sized buffer at a time. With
``zo.generator: philox`` the numbers are ``zofo.core.philox.truncated_normal_`` (the same inverse CDF in fixed
point): identical on every device, so client and server may differ in hardware. With ``torch`` they come
from a torch generator on the parameters' device, whose fp32 numbers can differ between GPU models and
between CPU instruction sets (vectorised kernels round differently): client and server must then
compute on the same hardware, which the simulation always does.

Variant "paper" (default). Every client draws its own 32-bit seed. The client uses exactly K directions:
K_l proportional to ||delta_l|| / rho_l, at least 1 per block (blocks whose share falls below 1 get 1,
the rest is shared in proportion by largest remainders), so K >= L is required: a block with no
direction would be reconstructed as 0, which is biased. K_l depends on delta, which the server does
not know, so it travels: the gammas are sent block by block, with one bit per direction marking the
first direction of each block (K bits for any L, since every block has one). Uplink, exactly:

    seed uint32 + block starts bool[K] + gamma fp32[K] (+ num_examples uint32 if weighting = examples)
    = 33 K + 32 (+ 32) bits

Downlink: "the aggregated coordinates" of the paper are per-client (every client has its own seed), so
every client of the round receives all n uplinks and rebuilds the same update: n (33 K + 32 (+ 32)) bits.
slr = 1 is the natural server step: the reconstruction is unbiased for delta, so E[w_next] is FedAvg's
average of the local models, and the local lr alone sets the step size.

Variant "official-code" reproduces the official code's behaviour:
- K is a pool of K seeds derived from the run seed and fixed across rounds, shared by all clients; for
  block l, the direction of pool seed k is drawn from ``derive(pool_k, l)`` (the official code reuses
  the same torch seed stream for every block; each block's directions have the same law either way, and
  so do the bias and the mean squared error, which add up over disjoint blocks).
- K_l = max(int(||delta_l|| / max_m ||delta_m|| * K), 2), and the K_l pool indices are a sample without
  replacement (the official code's unseeded ``random.sample``; here seeded from the run seed, round,
  client and block, so nothing about them must be sent).
- gamma scale d_l / K_l instead of 1 / (rho_l K_l): d_l rho_l (about 1/3) of the unbiased value, absorbed
  by slr = 10.
- the client uploads its dense L x K coordinate matrix (zeros where an index was not drawn), which is
  what the official client hands to the server (a seed -> L-vector pool), and the fixed-size form of
  a variable-length sparse code: uplink 32 K L (+ 32) bits.
- the server takes the omega-weighted sum A of the clients' matrices (the seeds are shared, so
  coordinates of the same seed add up), and applies, per block and seed, w_l -= slr * clip(A[l, k] v_{l,k}),
  the term's norm clipped to ``clip`` (10); the downlink is A: 32 K L bits.
  Not reproduced: server momentum on the seed pool and the slr annealing (the official script sets
  --momentum 0.0 --anneal no), and gradient accumulation (the engine's batch size is the batch).

In both variants the server applies exactly what it broadcasts (``apply_broadcast``), the rule every
receiving client runs on the downlink alone. The two protocols are two classes, ``FerretPaper`` and
``FerretOfficialCode``; ``Ferret``, registered as "ferret" with one Params, holds what they share and
builds the one ``variant`` names.

Local training is FedAvg's client loop (zofo.methods.first_order): ``optimizer`` (SGD, as the paper and
the official script, or AdamW) at ``lr`` for ``local_steps`` batches, without weight decay and without
a gradient clip. The paper states no clip, and the official code clips only when --grad_clip > 0, whose
default is -100 and which its script does not set; FedAvg's own default clips at norm 1, so a FedAvg run
"with Ferret's local training" must set ``max_grad_norm: null``. ``describe()`` records both.

Simulation keeps one working model: each client trains on it, and it is reset from one snapshot of the
global weights afterwards (as in FedAvg).
"""

from __future__ import annotations

import math
import statistics
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from zofo.core import philox
from zofo.core.config import ConfigError, ZOConfig, positive
from zofo.core.registry import METHODS
from zofo.core.seeds import derive, seed32
from zofo.methods.base import ClientData, FederatedMethod, Field, Payload
from zofo.methods.first_order import FirstOrderMethod, LocalTraining

_SQRT2 = math.sqrt(2.0)
SAMPLERS = {
    "torch": "inverse CDF (uniform + erfinv), one torch generator per direction, on the model's device",
    "philox": "inverse CDF in fixed point (zofo.core.philox), one Philox key per direction, any device",
}


@dataclass(frozen=True)
class FerretParams:
    # Local (first-order) learning rate; the paper and the official script use 1e-4 with SGD.
    lr: float = 1e-4
    local_steps: int = 10
    optimizer: Literal["sgd", "adamw"] = "sgd"
    # "paper": directions per client in all (>= the number of blocks); "official-code": the seed pool size.
    K: int = 200
    # Server step; null: 1.0 for "paper" (the unbiased reconstruction), 10.0 for "official-code".
    slr: float | None = None
    variant: Literal["paper", "official-code"] = "paper"
    # official-code only: the norm bound of each (block, seed) term of the server update.
    clip: float = 10.0
    # "auto": "tensor" for "paper", "packed" (the official grouping) for "official-code".
    blocks: Literal["auto", "tensor", "packed"] = "auto"
    # "uniform": omega_i = 1/n (the official script); "examples": data sizes, sent as one uint32 each.
    weighting: Literal["uniform", "examples"] = "uniform"

    def __post_init__(self) -> None:
        positive("method.params.lr", self.lr)
        positive("method.params.local_steps", self.local_steps)
        positive("method.params.K", self.K)
        positive("method.params.clip", self.clip)
        if self.slr is not None:
            positive("method.params.slr", self.slr)
        if self.variant == "official-code" and self.K < 2:
            raise ConfigError("method.params.K", self.K, ">= 2 for variant official-code (K_l >= 2)")

    @property
    def server_lr(self) -> float:
        if self.slr is not None:
            return self.slr
        return 1.0 if self.variant == "paper" else 10.0

    @property
    def block_kind(self) -> str:
        if self.blocks != "auto":
            return self.blocks
        return "tensor" if self.variant == "paper" else "packed"


# ---- the pieces, as functions of plain tensors (the tests use them directly) ---------------------------


def truncnorm_second_moment(c: float) -> float:
    """E[v^2] for v ~ N(0, 1) truncated to [-c, c]: 1 - 2 c phi(c) / (2 Phi(c) - 1), computed without
    the cancellation of that form for small c (where it is about c^2 / 3)."""
    if c <= 0:
        raise ValueError(f"truncation bound must be > 0, got {c}")
    denom = math.erf(c / _SQRT2)  # 2 Phi(c) - 1
    if c > 1.0:
        return 1.0 - 2.0 * c * math.exp(-0.5 * c * c) / math.sqrt(2.0 * math.pi) / denom
    # The numerator, int_{-c}^{c} x^2 phi(x) dx, by its power series: alternating, with terms falling
    # at least 2x per step for c <= 1, so 60 terms reach double precision.
    total, term_base = 0.0, c**3
    for n in range(60):
        term = term_base / (2 * n + 3)
        total += term
        if abs(term) < 1e-18 * abs(total):
            break
        term_base *= -0.5 * c * c / (n + 1)
    return 2.0 * total / math.sqrt(2.0 * math.pi) / denom


def block_rho(d: int) -> float:
    """rho_l = E[v^2] of a direction entry for a block of d parameters (truncation at 1/sqrt(d))."""
    return truncnorm_second_moment(1.0 / math.sqrt(d))


def truncated_normal_(out: torch.Tensor, c: float, generator: torch.Generator) -> torch.Tensor:
    """Fill ``out`` with iid N(0,1) truncated to [-c, c], by the inverse CDF: with
    Phi(x) = (1 + erf(x / sqrt2)) / 2, Phi^-1(U[Phi(-c), Phi(c)]) = sqrt2 erfinv(U[-e, e]), e = erf(c/sqrt2).
    The clamp only catches float rounding at the ends."""
    e = math.erf(c / _SQRT2)
    return out.uniform_(-e, e, generator=generator).erfinv_().mul_(_SQRT2).clamp_(-c, c)


def direction(seed: int, out: torch.Tensor, generator: str = "torch") -> torch.Tensor:
    """Fill the flat tensor ``out`` (d entries) with iid N(0,1) truncated to +-1/sqrt(d), from ``seed``:
    with ``generator="philox"`` the portable numbers of ``zofo.core.philox`` (the same on every device),
    with ``"torch"`` torch's generator on ``out``'s device."""
    c = 1.0 / math.sqrt(out.numel())
    if generator == "philox":
        return philox.truncated_normal_(out, seed, c)
    g = torch.Generator(device=out.device).manual_seed(int(seed))
    return truncated_normal_(out, c, g)


def project(
    delta: torch.Tensor, seeds: Sequence[int], scale: float, generator: str = "torch"
) -> torch.Tensor:
    """gamma_j = scale * v(seeds[j]) . delta, float32, one direction in memory at a time."""
    flat = delta.reshape(-1).float()
    buf = torch.empty_like(flat)
    out = torch.empty(len(seeds), dtype=torch.float32, device=flat.device)
    for j, s in enumerate(seeds):
        out[j] = torch.dot(direction(s, buf, generator), flat)
    return out.mul_(scale).cpu()


def rebuild(
    seeds: Sequence[int], coeffs: Sequence[float], out: torch.Tensor, generator: str = "torch"
) -> torch.Tensor:
    """out += sum_j coeffs[j] * v(seeds[j]) on the flat float32 tensor ``out``."""
    buf = torch.empty_like(out)
    for s, a in zip(seeds, coeffs, strict=True):
        if a != 0.0:
            out.add_(direction(s, buf, generator), alpha=float(a))
    return out


def direction_seeds(client_seed: int, block: int, count: int) -> list[int]:
    """The paper variant's direction seeds of one block: derived from the client's uploaded seed."""
    return [derive(client_seed, block, j) for j in range(count)]


def allocate(weights: Sequence[float], total: int, minimum: int = 1) -> list[int]:
    """Integers >= ``minimum`` summing to ``total``, proportional to ``weights`` where the floor allows:
    parts whose share is below the minimum get the minimum and the rest is shared again among the others;
    the final shares are rounded by largest remainder (ties to the lower index). Non-finite or negative
    weights count as 0; all-zero weights share equally."""
    n = len(weights)
    if total < minimum * n:
        raise ValueError(f"cannot give {n} parts at least {minimum} each from {total}")
    w = [x if math.isfinite(x) and x > 0 else 0.0 for x in weights]
    if sum(w) == 0.0:
        w = [1.0] * n
    fixed: set[int] = set()
    while True:
        free = [i for i in range(n) if i not in fixed]
        budget = total - minimum * len(fixed)
        mass = sum(w[i] for i in free)
        quota = {i: budget * w[i] / mass if mass > 0 else budget / len(free) for i in free}
        low = [i for i in free if quota[i] < minimum]
        if not low:
            break
        fixed.update(low)
    parts = [minimum] * n
    for i in free:
        parts[i] = math.floor(quota[i])
    left = total - sum(parts)
    for i in sorted(free, key=lambda i: (-(quota[i] - math.floor(quota[i])), i))[:left]:
        parts[i] += 1
    return parts


def official_counts(norms: Sequence[float], K: int) -> list[int]:
    """The official code's K_l = max(int(||delta_l|| / max_m ||delta_m|| * K), 2); a non-finite norm
    gets 2, and the largest norm is floored at 1e-8 as there."""
    finite = [x for x in norms if math.isfinite(x)]
    top = max([1e-8, *finite])
    return [min(K, max(int(x / top * K), 2)) if math.isfinite(x) else 2 for x in norms]


def official_indices(seed: int, K: int, count: int) -> list[int]:
    """``count`` distinct pool indices out of K, drawn from ``seed``."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.randperm(K, generator=g)[:count].tolist()


def blocks(params: Sequence[torch.Tensor], kind: str) -> list[list[int]]:
    """Blocks as lists of indices into ``params`` (the trainable tensors in parameters() order)."""
    if kind == "tensor":
        return [[i] for i in range(len(params))]
    if kind != "packed":
        raise ValueError(f"block kind {kind!r}: allowed 'tensor' or 'packed'")
    target = int(0.9 * statistics.median(p.numel() for p in params))
    out: list[list[int]] = []
    current: list[int] = []
    size = 0
    for i, p in enumerate(params):
        if current and size + p.numel() > target:
            out.append(current)
            current, size = [], 0
        current.append(i)
        size += p.numel()
    if current:
        out.append(current)
    return out


def sends_examples(params: FerretParams) -> bool:
    """Whether a client's uplink carries its example count (omega_i from data sizes)."""
    return params.weighting == "examples"


# ---- the method: what both protocols share ---------------------------------------------------------------


@METHODS.register("ferret")
class Ferret(FirstOrderMethod):
    """Ferret's local training, its blocks and its server step; the protocol (what travels, how the
    server rebuilds it) is ``FerretPaper`` or ``FerretOfficialCode``, chosen by ``variant``."""

    Params = FerretParams
    family = "fo"
    reference = "Ferret, Shu et al., ICML 2025 (arXiv 2409.06277); official code allen4747/Ferret"
    test_params = {"lr": 1e-3, "K": 40, "local_steps": 2}
    # Ferret's clients clip no gradient. The paper states none, and the official code clips only when
    # --grad_clip > 0: its default is -100 and scripts/ferret.sh does not set it. (FedAvg's default clip
    # of norm 1 is FedAvg's own choice; a run that compares the two differs in this too.)
    grad_clip: ClassVar[float | None] = None
    GRAD_CLIP_SOURCE = (
        "none: the paper states no clip; the official code (allen4747/Ferret) clips only if --grad_clip > 0, "
        "default -100, not set by scripts/ferret.sh"
    )

    @classmethod
    def implementation(cls, params: FerretParams) -> type[FederatedMethod]:
        return FerretPaper if params.variant == "paper" else FerretOfficialCode

    def setup(self) -> None:
        super().setup()
        self.blocks = blocks(self.trainable, self.params.block_kind)
        self.sizes = [sum(self.trainable[i].numel() for i in b) for b in self.blocks]
        # Every seeded direction of a run comes from the run's generator (zo.generator), ZO's and Ferret's.
        self.generator = self.ctx.zo.generator

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @classmethod
    def memory_factor(cls, params: Any, zo: ZOConfig, cohort_size: int) -> float:
        # The model, its gradients and AdamW's two moments (SGD keeps none), the snapshot of the global
        # weights and the float32 block deltas (one more copy of the model).
        return (4 if params.optimizer == "adamw" else 2) + 2

    @classmethod
    def aggregators(cls, params: FerretParams) -> tuple[str, ...]:
        # Per-coordinate rules only: Krum's distances between whole client updates would need every
        # block rebuilt twice (a second pass of direction draws); not offered.
        return ("mean", "median", "trimmed-mean")

    def local_training(self) -> LocalTraining:
        return LocalTraining(self.params.lr, self.params.optimizer, 0.0, self.grad_clip)

    def local_steps(self) -> int:
        return self.params.local_steps

    # -- client --

    def local_delta(self, client: ClientData) -> list[torch.Tensor]:
        """Train T steps from the global weights; return delta = w - w_T per block (flat float32) and
        leave the model holding the global weights."""
        self.train_locally(client, self.params.local_steps)
        with torch.no_grad():
            deltas = [
                torch.cat([(self.global_weights[i] - self.trainable[i]).reshape(-1).float() for i in b])
                for b in self.blocks
            ]
        self.reset_to_global()
        return deltas

    def encode(
        self, round_idx: int, client_id: int, deltas: list[torch.Tensor], num_examples: int
    ) -> Payload:
        """The uplink payload for the block deltas of one client."""
        payload = self.project_deltas(round_idx, client_id, deltas)
        if sends_examples(self.params):
            payload["num_examples"] = torch.tensor([num_examples], dtype=torch.uint32)
        return payload

    @abstractmethod
    def project_deltas(self, round_idx: int, client_id: int, deltas: list[torch.Tensor]) -> Payload:
        """The protocol's coordinates of one client's block deltas."""

    def client_update(self, round_idx: int, client: ClientData) -> Payload:
        deltas = self.local_delta(client)
        return self.encode(round_idx, client.client_id, deltas, client.num_examples)

    # -- server --

    @staticmethod
    def omegas(num_examples: torch.Tensor | None, n: int) -> list[float]:
        if num_examples is None:
            return [1.0 / n] * n
        sizes = [float(x) for x in num_examples.reshape(-1).tolist()]
        return [s / sum(sizes) for s in sizes]

    @abstractmethod
    def broadcast(self, payloads: list[Payload]) -> Payload:
        """The downlink for the round's decoded uplinks."""

    @abstractmethod
    def block_updates(self, down: Payload) -> Iterator[torch.Tensor]:
        """Per block, the update (flat float32) every party rebuilds from the downlink alone."""

    @torch.no_grad()
    def apply_broadcast(self, down: Payload) -> None:
        """What every party does with the downlink: w -= slr * the rebuilt update (server included, so its
        model is exactly the one a client rebuilds)."""
        slr = self.params.server_lr
        for blk, update in zip(self.blocks, self.block_updates(down), strict=True):
            offset = 0
            for i in blk:
                g = self.global_weights[i]
                n = g.numel()
                g.sub_(update[offset : offset + n].view_as(g).to(g.dtype), alpha=slr)
                offset += n
        self.load_weights(self.global_weights)

    def aggregate(self, round_idx: int, payloads: list[Payload]) -> Payload:
        down = self.broadcast(payloads)
        self.apply_broadcast(down)
        return down

    @abstractmethod
    def uplink_bits(self) -> int:
        """Bits one client uploads per round (see the module docstring)."""

    @abstractmethod
    def protocol(self) -> dict[str, Any]:
        """The protocol's choices, for ``describe``."""

    def describe(self) -> dict[str, Any]:
        p = self.params
        return {
            **super().describe(),
            "grad_clip": self.GRAD_CLIP_SOURCE,
            "variant": p.variant,
            "slr": p.server_lr,
            "blocks": p.block_kind,
            "num_blocks": len(self.blocks),
            "uplink_bits": self.uplink_bits(),
            **self.protocol(),
            "sampler": SAMPLERS[self.generator],
        }


# ---- variant "paper" -----------------------------------------------------------------------------------


class FerretPaper(Ferret):
    """The paper's protocol: a seed per client, exactly K directions allocated by block, unbiased scale."""

    uplink = {
        "seed": Field("seed", (1,), torch.uint32),
        "block_starts": Field("structure", ("K",), torch.bool),
        "gamma": Field("scalar", ("K",), torch.float32),
        "num_examples": Field("count", (1,), torch.uint32, when=sends_examples),
    }

    def setup(self) -> None:
        super().setup()
        p = self.params
        self.rhos = [block_rho(d) for d in self.sizes]
        if p.K < len(self.blocks):
            raise ConfigError(
                "method.params.K",
                p.K,
                f">= the number of blocks ({len(self.blocks)} {p.block_kind} blocks of this model): the "
                "paper variant gives every block at least one direction; raise K or set blocks: packed",
            )

    def client_seed(self, round_idx: int, client_id: int) -> int:
        # A client would pick any seed; deriving it keeps runs reproducible. It is sent either way.
        return seed32(self.ctx.seed, "ferret", "round", round_idx, "client", client_id)

    def project_deltas(self, round_idx: int, client_id: int, deltas: list[torch.Tensor]) -> Payload:
        p = self.params
        norms = [float(torch.linalg.vector_norm(x)) for x in deltas]
        seed = self.client_seed(round_idx, client_id)
        counts = allocate([n / r for n, r in zip(norms, self.rhos, strict=True)], p.K)
        gammas, starts = [], torch.zeros(p.K, dtype=torch.bool)
        offset = 0
        for blk, (delta, k) in enumerate(zip(deltas, counts, strict=True)):
            gammas.append(
                project(delta, direction_seeds(seed, blk, k), 1.0 / (self.rhos[blk] * k), self.generator)
            )
            starts[offset] = True
            offset += k
        return {
            "seed": torch.tensor([seed], dtype=torch.uint32),
            "block_starts": starts,
            "gamma": torch.cat(gammas),
        }

    def block_counts(self, starts: torch.Tensor) -> list[int]:
        """K_l from the block-start bits: direction j is in the block of the last start at or before j."""
        if not bool(starts[0]) or int(starts.sum()) != len(self.blocks):
            raise ValueError(
                f"block_starts must open with a start and hold {len(self.blocks)} starts; got "
                f"{int(starts.sum())}, first {bool(starts[0])}"
            )
        block_of = torch.cumsum(starts.long(), 0) - 1
        return torch.bincount(block_of, minlength=len(self.blocks)).tolist()

    def check_payload(self, round_idx: int, client_id: int, payload: Payload) -> str | None:
        expected = self.client_seed(round_idx, client_id)
        if int(payload["seed"].item()) != expected:
            return f"seed {int(payload['seed'].item())}, expected {expected}"
        try:
            self.block_counts(payload["block_starts"])  # the rule every receiver decodes with
        except ValueError as e:
            return str(e)
        return None

    def broadcast(self, payloads: list[Payload]) -> Payload:
        # Every client has its own seed: the receivers need every uplink.
        down = {
            "seeds": torch.cat([pl["seed"] for pl in payloads]),
            "block_starts": torch.stack([pl["block_starts"] for pl in payloads]),
            "gammas": torch.stack([pl["gamma"] for pl in payloads]),
        }
        if sends_examples(self.params):
            down["num_examples"] = torch.cat([pl["num_examples"] for pl in payloads])
        return down

    def block_updates(self, down: Payload) -> Iterator[torch.Tensor]:
        """Per block, sum_i omega_i sum_j gamma_{i,l,j} v_{i,l,j} (flat float32), from the broadcast.

        Under a robust rule (median, trimmed mean) every party rebuilds each client's block update and
        combines them coordinate by coordinate instead: the rules are per coordinate, so block by block
        is the same as on whole models, and only n block-sized buffers are alive at a time."""
        seeds = [int(s) for s in down["seeds"].tolist()]
        omegas = self.omegas(down.get("num_examples"), len(seeds))
        counts = [self.block_counts(row) for row in down["block_starts"]]
        offsets = [0] * len(seeds)
        device = self.trainable[0].device
        for blk, d in enumerate(self.sizes):
            # (seeds, coordinates) of every client's directions in this block
            parts = []
            for i, seed in enumerate(seeds):
                k = counts[i][blk]
                parts.append(
                    (direction_seeds(seed, blk, k), down["gammas"][i, offsets[i] : offsets[i] + k].double())
                )
                offsets[i] += k

            def weighted(parts: list = parts, d: int = d) -> torch.Tensor:
                update = torch.zeros(d, dtype=torch.float32, device=device)
                for (dirs, gammas), omega in zip(parts, omegas, strict=True):
                    rebuild(dirs, (gammas * omega).tolist(), update, self.generator)
                return update

            def per_client(parts: list = parts, d: int = d) -> torch.Tensor:
                rows = torch.zeros(len(parts), d, dtype=torch.float32, device=device)
                for i, (dirs, gammas) in enumerate(parts):
                    rebuild(dirs, gammas.tolist(), rows[i], self.generator)
                return rows

            yield self.combine_clients("dense", own=weighted, rows=per_client)

    def uplink_bits(self) -> int:
        return 33 * self.params.K + 32 + (32 if sends_examples(self.params) else 0)

    def formula_bits(self, d: int, n: int) -> tuple[int, int]:
        # seed + K block-start bits + K fp32 gammas (+ example count) up; all n uplinks down.
        return self.uplink_bits(), n * self.uplink_bits()

    def protocol(self) -> dict[str, Any]:
        return {
            "downlink": "all n uplinks",
            "gamma_scale": "1/(rho_l K_l)",
            "allocation": "K_l ~ ||delta_l||/rho_l, >= 1, sum K",
            "clip": None,
        }


# ---- variant "official-code" ---------------------------------------------------------------------------


class FerretOfficialCode(Ferret):
    """The official code's protocol: a fixed pool of K shared seeds, K_l >= 2 indices per block, the
    scale d_l/K_l, the dense L x K coordinates up and their weighted sum down, clipped server terms."""

    uplink = {
        "coords": Field("scalar", ("num_blocks", "K"), torch.float32),
        "num_examples": Field("count", (1,), torch.uint32, when=sends_examples),
    }

    def setup(self) -> None:
        super().setup()
        # The seed pool, fixed for the run and known to every party.
        self.pool = [derive(self.ctx.seed, "ferret", "pool", k) for k in range(self.params.K)]

    def project_deltas(self, round_idx: int, client_id: int, deltas: list[torch.Tensor]) -> Payload:
        p = self.params
        norms = [float(torch.linalg.vector_norm(x)) for x in deltas]
        counts = official_counts(norms, p.K)
        coords = torch.zeros(len(self.blocks), p.K, dtype=torch.float32)
        for blk, (delta, k) in enumerate(zip(deltas, counts, strict=True)):
            pick = derive(self.ctx.seed, "ferret", "indices", round_idx, client_id, blk)
            idx = official_indices(pick, p.K, k)
            coords[blk, idx] = project(
                delta, [derive(self.pool[i], blk) for i in idx], self.sizes[blk] / k, self.generator
            )
        return {"coords": coords}

    def broadcast(self, payloads: list[Payload]) -> Payload:
        # The seeds are shared, so coordinates of the same seed add up (or are combined per coordinate).
        sizes = torch.cat([pl["num_examples"] for pl in payloads]) if sends_examples(self.params) else None

        def weighted_sum() -> torch.Tensor:
            coords = payloads[0]["coords"]
            total = torch.zeros(coords.shape, dtype=torch.float64, device=coords.device)
            for pl, omega in zip(payloads, self.omegas(sizes, len(payloads)), strict=True):
                total.add_(pl["coords"].double(), alpha=omega)
            return total

        coords = self.combine_clients(
            "scalar", own=weighted_sum, rows=lambda: torch.stack([pl["coords"].double() for pl in payloads])
        )
        return {"coords": coords.float()}

    def block_updates(self, down: Payload) -> Iterator[torch.Tensor]:
        """Per block, sum_k clip(A[l, k] v_{l,k}) (flat float32) for the aggregated coordinates A (L x K)."""
        coords = down["coords"]
        for blk, d in enumerate(self.sizes):
            update = torch.zeros(d, dtype=torch.float32, device=self.trainable[0].device)
            buf = torch.empty_like(update)
            for k, a in enumerate(coords[blk].tolist()):
                if a == 0.0:
                    continue  # a seed no client drew for this block
                v = direction(derive(self.pool[k], blk), buf, self.generator)
                norm = abs(a) * float(torch.linalg.vector_norm(v))
                update.add_(v, alpha=a * min(1.0, self.params.clip / (norm + 1e-8)))
            yield update

    def uplink_bits(self) -> int:
        return 32 * self.params.K * len(self.blocks) + (32 if sends_examples(self.params) else 0)

    def formula_bits(self, d: int, n: int) -> tuple[int, int]:
        # the L x K fp32 coordinates (+ example count) up; their L x K weighted sum down.
        return self.uplink_bits(), 32 * self.params.K * len(self.blocks)

    def protocol(self) -> dict[str, Any]:
        return {
            "downlink": "summed L x K coordinates",
            "gamma_scale": "d_l/K_l",
            "allocation": "max(int(||delta_l||/max||delta|| K), 2) of a fixed pool",
            "clip": self.params.clip,
        }
