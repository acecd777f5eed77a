"""FedKSeed and FedKSeed-Pro (arXiv 2312.06353; official code: alibaba/FederatedScope, branch FedKSeed).

Every party knows K candidate seeds C_1..C_K (derived from the run seed) and the pretrained weights w0.
The global model is always w0 - lr * sum_j A[j] z(C_j), where A (K scalars) is the server's
cumulative pool of aggregated projected gradients, so the whole training history is K numbers.

    client: start from the global w; a = 0 (K scalars)
            tau times: j ~ p (uniform, or Pro's p below); g = estimate(w, C_j, batch); w -= lr * g * z(C_j);
                       a[j] += g
            upload a (K fp32, dense)
    server: dA = sum_i omega_i a_i  (omega_i: data size, or equal; normalised to sum 1); A += dA
            broadcast dA (K fp32); every party applies w -= lr * sum_j dA[j] z(C_j)

Because each local step is w -= lr * g * z(C_j), client i's local model is exactly
w - lr * sum_j a_i[j] z(C_j), and the omega-weighted average of the local models is
w - lr * sum_j dA[j] z(C_j): aggregating K scalars is FedAvg of the local models (tested).

Server update. The paper rebuilds the model each round from w0 and the whole pool ("rebuild":
w0 - lr * sum_j A[j] z(C_j), one regeneration per seed with nonzero A, up to K per round, and w0 kept
in memory). The update is linear, so applying only this round's change ("incremental":
w -= lr * sum_j dA[j] z(C_j), at most cohort * tau regenerations, no w0 copy) gives the same weights up
to float rounding; the test suite checks that on tiny-llama, and "incremental" is the default. Either
way the server applies the fp32 dA it broadcasts (A accumulates those rounded values in fp64), so its
model is exactly the one a client rebuilds from the broadcasts. The learning rate is constant and there
is no weight decay: both would break the rebuild from the pool.

Simulation keeps one working model: each client trains on it and it is reset from one snapshot of the
global weights afterwards (exact, unlike undoing tau steps). Data sizes for omega are the clients'
static shard sizes, known to the server from enrolment (the official code reads them directly), so
they are not sent per round.

Catch-up. The engine counts the per-round broadcast dA to that round's cohort. A client that was absent
since it last synced after round t must first download A_now - A_t (K fp32) and regenerate each seed
whose entry changed; the official code skips this by deep-copying the server model. The method tracks
the round every client last synced; ``catch_up`` is the message A_now - A_t, which the engine counts in
the round's downlink (``bits_down``, ``bits_catch_up``), and ``client_update`` counts the number of
nonzero entries of A_now - A_t (the regenerations it would run; the simulated working model already
holds the global weights, so they are counted, not executed). A client's first round counts as a
catch-up from w0 and A = 0 (t = 0), except in round 1: every client holds w0, and before round 1 there
is nothing to catch up on. Totals are reported by ``describe()``: catch_up_clients, catch_up_bits_down
(the sum of the rows' bits_catch_up), catch_up_regenerations (and server_regenerations, the server's
own update cost).

Seed draws come from a generator derived from (run seed, round, client): runs are reproducible and the
draws of one client do not depend on the others.

FedKSeed-Pro samples seed j with p = softmax(minmax(score)), where score_j is the mean |projected
gradient| seen for seed j, each value clipped at ``score_clip`` and the mean seeded with one entry
``score_initial`` (the official code's bias_loss_clip and grad_initial); minmax(s) =
(s - min s) / (max s - min s + 1e-10). p is fixed for a round, computed from what was known after the
previous round (uniform in round 1). Two sources for the scores (``pro_scores``):

- "round-sums" (default): what the clients themselves can compute. The only thing every client receives
  is the broadcast dA_r, so score_j is the mean over the past rounds r with dA_r[j] != 0 of
  n_r * |dA_r[j]| (n_r = clients aggregated in round r, a protocol constant). With equal weights
  n_r * dA_r[j] is the sum over clients of a_i[j]: when a single client drew seed j once in round r
  (most nonzero entries while cohort * tau << K), it is that draw's |g|, as in the official score; when
  several steps drew it, it is |their sum|, which favours seeds whose estimates agree. With data-size
  weights each client's entry is scaled by n_r * omega_i. Because p is a deterministic function of the
  broadcast history, it costs no bits. (A score from the individual a_i, e.g. the mean
  |a_i[j]|, would be closer to per-step magnitudes, but then p would have to be broadcast: K more
  floats per client and round.)
- "step-history": the official code's rule: the mean over every local step, of every client so far, that
  drew seed j, of its |g|. The official clients append to a history object shared with the server
  process; a real server never sees per-step values, and clients could not compute p without them, so
  in this mode neither the history nor p is on the wire (``describe()["probabilities_from_broadcasts"]``
  is false and the downlink bits are the same as FedKSeed's).

Not reproduced from the official code: its optional skip of steps whose loss difference exceeds
grad_clip (off by default there) and of steps with a NaN loss (here the engine stops a run whose
training loss is not finite).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch

from zofo.core.config import ConfigError, ZOConfig, positive
from zofo.core.registry import METHODS
from zofo.core.seeds import seed32, torch_rng
from zofo.core.zo import SeededDirections, trainable_parameters
from zofo.methods.base import ClientData, FederatedMethod, Field, Payload

# minmax's guard against a zero range, as in the official code: equal scores give uniform p.
MINMAX_EPS = 1e-10


@dataclass(frozen=True)
class FedKSeedParams:
    # Local ZO-SGD step size: w -= lr * g * z. The paper's README uses 3e-7 at 1.3B parameters; 1e-6 is
    # a MeZO-scale start for ~100M-parameter models (tune on validation, as for every method).
    lr: float = 1e-6
    # Number of candidate seeds (the official code's default).
    K: int = 4096
    # tau: local ZO steps per client and round, one batch each (the official code's default).
    local_steps: int = 200
    # "examples": omega_i proportional to the client's data size (official default); "uniform": equal.
    weighting: Literal["examples", "uniform"] = "examples"
    # "incremental": apply this round's pool change; "rebuild": w0 - lr * sum_j A[j] z(C_j) every round
    # (the paper's server; same weights up to rounding, up to K regenerations per round and a copy of w0).
    server_update: Literal["incremental", "rebuild"] = "incremental"

    def __post_init__(self) -> None:
        positive("method.params.lr", self.lr)
        positive("method.params.K", self.K)
        positive("method.params.local_steps", self.local_steps)
        if self.weighting not in ("examples", "uniform"):
            raise ConfigError("method.params.weighting", self.weighting, "'examples' or 'uniform'")
        if self.server_update not in ("incremental", "rebuild"):
            raise ConfigError("method.params.server_update", self.server_update, "'incremental' or 'rebuild'")


@dataclass(frozen=True)
class FedKSeedProParams(FedKSeedParams):
    # Where the seed scores come from (module docstring): "round-sums" is computable from the broadcasts
    # (p costs no bits); "step-history" is the official simulation's per-step history (not on any wire).
    pro_scores: Literal["round-sums", "step-history"] = "round-sums"
    # Each score entry is clipped to at most this magnitude (official bias_loss_clip, default 1000).
    score_clip: float = 1000.0
    # Every seed's score starts as the mean of this one entry (official grad_initial, default 0).
    score_initial: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pro_scores not in ("round-sums", "step-history"):
            raise ConfigError("method.params.pro_scores", self.pro_scores, "'round-sums' or 'step-history'")
        positive("method.params.score_clip", self.score_clip)


@torch.no_grad()
def zo_sgd_step(dirs: SeededDirections, seed: int, loss: Callable[[], torch.Tensor], lr: float) -> float:
    """One local step of a FedKSeed client: estimate the projected gradient g along z(seed), then
    w -= lr * g * z(seed); returns g. The estimate holds its last perturbation (``hold``) so that the
    update absorbs the restore: one pass fewer with ``zo.fuse``, the separate passes without."""
    g = dirs.estimate(seed, loss, hold=True)
    dirs.update(seed, lr * g)
    return g


def seed_probabilities(scores: torch.Tensor) -> torch.Tensor:
    """softmax(minmax(scores)) in fp64: FedKSeed-Pro's sampling distribution over the K seeds."""
    s = scores.to(torch.float64)
    normalised = (s - s.min()) / (s.max() - s.min() + MINMAX_EPS)
    return torch.softmax(normalised, dim=0)


@METHODS.register("fedkseed")
class FedKSeed(FederatedMethod):
    Params = FedKSeedParams
    family = "zo"
    reference = "FedKSeed, arXiv 2312.06353 (official code: alibaba/FederatedScope, branch FedKSeed)"
    # per-seed sums, aligned across clients on the shared K seeds
    uplink = {"a": Field("scalar", ("K",), torch.float32)}
    # The defaults (200 local steps, 4096 seeds) take minutes on the test model; a few of each suffice.
    test_params = {"lr": 1e-3, "K": 16, "local_steps": 2}
    # The global model is w0 plus the broadcast pool changes, so a checkpoint holds those (K scalars a
    # round) and load_state_dict replays them: the same axpy sequence, hence the same bits.
    checkpoint_weights = False
    state_attrs = (
        "_deltas",
        "pool",
        "pool_round",
        "probabilities",
        "_cohort",
        "_synced",
        "_pool_at",
        "catch_up_count",
        "server_regenerations",
    )

    def setup(self) -> None:
        p = self.params
        self.ctx.model.eval()  # ZO compares two losses: no dropout noise between them
        self.trainable = trainable_parameters(self.ctx.model)
        self.dirs = SeededDirections.from_config(self.trainable, self.ctx.zo, cache_size=self.cache_size())
        # Shared by FedKSeed and FedKSeed-Pro, so both draw from the same K directions for a run seed.
        self.candidates = [seed32(self.ctx.seed, "fedkseed", "candidate", j) for j in range(p.K)]
        # fp64 sum of the fp32 changes actually broadcast: any client can hold exactly the same numbers.
        self.pool = torch.zeros(p.K, dtype=torch.float64)
        self.pool_round = 0  # the round whose aggregate produced the current pool (0: nothing yet)
        self.global_weights = [w.detach().clone() for w in self.trainable]
        self.w0 = [w.detach().clone() for w in self.trainable] if p.server_update == "rebuild" else None
        self.probabilities: torch.Tensor | None = None  # None: uniform (plain FedKSeed)
        # Per round: (client id, data size) in the order the clients ran, i.e. the payloads' order.
        self._cohort: dict[int, list[tuple[int, int]]] = {}
        # Clients whose payload the server rejected this round: they still receive the broadcast.
        self._rejected: dict[int, list[int]] = {}
        # Catch-up bookkeeping: the pool round each client last synced to (absent: 0, i.e. w0 and A = 0),
        # and the pool as it was at every round some client is still synced to.
        self._synced: dict[int, int] = {}
        self._pool_at: dict[int, torch.Tensor] = {0: self.pool.clone()}
        self.catch_up_count = {"clients": 0, "regenerations": 0}
        self.server_regenerations = 0
        self._deltas: list[torch.Tensor] = []  # every round's broadcast pool change, in order

    def cache_size(self) -> int:
        """Directions fast mode keeps. A step uses its z four times, so one is enough for the clients;
        the server then applies the round's pool change along every seed the cohort drew, which would
        regenerate each of them once more. Keeping the round's directions (up to ``zo.cache_mb``) lets
        the server reuse them: a kept z is bitwise the regenerated one, so the weights are the same."""
        zo = self.ctx.zo
        if zo.mode != "fast":
            return 1
        per_direction = sum(p.numel() * p.element_size() for p in self.trainable)
        fit = (zo.cache_mb << 20) // max(1, per_direction)
        return max(1, min(self.ctx.cohort_size * self.params.local_steps, fit))

    @classmethod
    def memory_factor(cls, params: Any, zo: ZOConfig, cohort_size: int) -> float:
        # Inference level (weights + 10% for activations), the snapshot of the global weights, w0 for
        # the rebuilding server, and the cached z in fast mode (plus up to zo.cache_mb of the round's
        # directions kept for the server, a fixed amount rather than a multiple of the model).
        rebuild = params.server_update == "rebuild"
        return 1.1 + 1.0 + (1.0 if rebuild else 0.0) + (1.0 if zo.mode == "fast" else 0.0)

    def local_steps(self) -> int:
        return self.params.local_steps

    def seed_draws(self, round_idx: int, client_id: int) -> torch.Tensor:
        """The indices j of the seeds client ``client_id`` uses in its tau steps of round ``round_idx``."""
        gen = torch_rng(self.ctx.seed, "fedkseed", "draws", round_idx, client_id)
        tau = self.params.local_steps
        if self.probabilities is None:
            return torch.randint(self.params.K, (tau,), generator=gen)
        return torch.multinomial(self.probabilities, tau, replacement=True, generator=gen)

    def _pool_change(self, client_id: int) -> torch.Tensor | None:
        """A_now - A_t for a client last synced after round t, as the server sends it (fp32); None when
        the client holds the current pool."""
        last = self._synced.get(client_id, 0)
        if last >= self.pool_round:
            return None
        return (self.pool - self._pool_at[last]).to(torch.float32)

    def catch_up(self, round_idx: int, client_id: int) -> Payload | None:
        change = self._pool_change(client_id)
        return None if change is None else {"change": change}

    def _count_catch_up(self, client_id: int) -> None:
        change = self._pool_change(client_id)
        if change is not None:
            self.catch_up_count["clients"] += 1
            self.catch_up_count["regenerations"] += int(torch.count_nonzero(change))
        self._sync(client_id)

    def _sync(self, client_id: int) -> None:
        self._synced[client_id] = self.pool_round
        if self.pool_round not in self._pool_at:
            self._pool_at[self.pool_round] = self.pool.clone()

    @torch.no_grad()
    def _load(self, weights: list[torch.Tensor]) -> None:
        for w, src in zip(self.trainable, weights, strict=True):
            w.copy_(src)

    def _restore_global(self) -> None:
        self._load(self.global_weights)

    def _record_steps(self, round_idx: int, draws: torch.Tensor, grads: torch.Tensor) -> None:
        """Hook for per-step statistics (FedKSeed-Pro's step history); plain FedKSeed keeps none."""

    def client_update(self, round_idx: int, client: ClientData) -> Payload:
        self._count_catch_up(client.client_id)
        self._cohort.setdefault(round_idx, []).append((client.client_id, client.num_examples))
        lr = self.params.lr
        draws = self.seed_draws(round_idx, client.client_id)
        grads = torch.empty(len(draws), dtype=torch.float64)
        a = torch.zeros(self.params.K, dtype=torch.float64)
        with torch.no_grad():
            for step, j in enumerate(draws.tolist()):
                g = zo_sgd_step(
                    self.dirs, self.candidates[j], functools.partial(self.ctx.loss, next(client.batches)), lr
                )
                grads[step] = g
                a[j] += g
        self._restore_global()
        self._record_steps(round_idx, draws, grads)
        return {"a": a.to(torch.float32)}

    def _weights(self, cohort: list[tuple[int, int]]) -> torch.Tensor:
        if self.params.weighting == "examples":
            w = torch.tensor([n for _, n in cohort], dtype=torch.float64)
        else:
            w = torch.ones(len(cohort), dtype=torch.float64)
        return w / w.sum()

    @torch.no_grad()
    def _apply(self, delta: torch.Tensor) -> None:
        lr = self.params.lr
        if self.params.server_update == "rebuild":
            self._load(self.w0)
            coeffs = self.pool
        else:
            coeffs = delta.to(torch.float64)
        seeds = torch.nonzero(coeffs).flatten().tolist()
        for j in seeds:
            self.dirs.axpy(self.candidates[j], -lr * float(coeffs[j]))
        # The protocol's cost: a server holds no client's z and regenerates every seed it applies (the
        # simulation may find some kept from the clients' steps, which changes the time, not the count).
        self.server_regenerations += len(seeds)
        for g, w in zip(self.global_weights, self.trainable, strict=True):
            g.copy_(w)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        # Rebuild the global model from w0 (the weights setup() just saw) by replaying the broadcasts.
        counter = self.server_regenerations
        if self.params.server_update == "rebuild":
            if self._deltas:
                self._apply(self._deltas[-1])  # rebuild mode applies the whole pool at once
        else:
            for delta in self._deltas:
                self._apply(delta)
        self.server_regenerations = counter  # the replay is recovery work, not the run's server cost

    def _update_scores(self, round_idx: int, payloads: list[Payload], delta: torch.Tensor) -> None:
        """Hook run after the pool update (FedKSeed-Pro recomputes its seed probabilities here)."""

    def drop_client(self, round_idx: int, client_id: int) -> None:
        self._cohort[round_idx] = [c for c in self._cohort.get(round_idx, []) if c[0] != client_id]
        self._rejected.setdefault(round_idx, []).append(client_id)

    def combine_sums(self, cohort: list[tuple[int, int]], payloads: list[Payload]) -> torch.Tensor:
        """The pool change: the omega-weighted sum of the clients' per-seed sums (the paper), or the
        configured robust rule per seed (median or trimmed mean over clients, weights ignored)."""

        # The pool and its bookkeeping are K scalars kept on the CPU, wherever the payloads were decoded.
        def weighted_sum() -> torch.Tensor:
            delta64 = torch.zeros(self.params.K, dtype=torch.float64)
            for w, pl in zip(self._weights(cohort).tolist(), payloads, strict=True):
                delta64.add_(pl["a"].to("cpu", torch.float64), alpha=w)
            return delta64

        delta = self.combine_clients(
            "scalar",
            own=weighted_sum,
            rows=lambda: torch.stack([pl["a"].to("cpu", torch.float64) for pl in payloads]),
        )
        return delta.to(torch.float32)

    def expect_cohort(self, round_idx: int, cohort: list[tuple[int, int]]) -> None:
        """The server's record of round ``round_idx``'s cohort, (client id, data size) in payload order.
        ``client_update`` keeps it when the clients run in this process; a server that receives uploads
        computed elsewhere (a replay of recorded rounds, the bench) states the cohort it sampled here."""
        self._cohort[round_idx] = list(cohort)

    def aggregate(self, round_idx: int, payloads: list[Payload]) -> Payload:
        cohort = self._cohort.pop(round_idx, [])
        rejected = self._rejected.pop(round_idx, [])
        if len(cohort) != len(payloads):
            raise RuntimeError(
                f"fedkseed round {round_idx}: {len(payloads)} payloads, {len(cohort)} client_update calls"
            )
        delta = self.combine_sums(
            cohort, payloads
        )  # the wire's value: the server uses exactly what clients receive
        self.pool += delta.to(torch.float64)
        self.pool_round = round_idx
        self._deltas.append(delta.clone())
        self._apply(delta)
        self._update_scores(round_idx, payloads, delta)
        for client_id in [c for c, _ in cohort] + rejected:
            self._sync(client_id)
        # Forget pool snapshots no client is synced to any more (round 0 stays: new clients start there).
        live = set(self._synced.values()) | {0}
        for t in [t for t in self._pool_at if t not in live]:
            del self._pool_at[t]
        return {"delta": delta}

    def formula_bits(self, d: int, n: int) -> tuple[int, int]:
        # K fp32 per-seed sums up, the K-scalar change of the pool down (Pro's probabilities are computed).
        return 32 * self.params.K, 32 * self.params.K

    def describe(self) -> dict[str, Any]:
        p = self.params
        return {
            "K": p.K,
            "server_update": p.server_update,
            "weighting": p.weighting,
            "seed_sampling": "uniform",
            "probabilities_from_broadcasts": True,
            "catch_up_clients": self.catch_up_count["clients"],
            "catch_up_bits_down": self.catch_up_count["clients"] * 32 * p.K,
            "catch_up_regenerations": self.catch_up_count["regenerations"],
            "server_regenerations": self.server_regenerations,
        }


@METHODS.register("fedkseed-pro")
class FedKSeedPro(FedKSeed):
    Params = FedKSeedProParams
    reference = "FedKSeed-Pro, arXiv 2312.06353 (official code: alibaba/FederatedScope, branch FedKSeed)"
    state_attrs = (*FedKSeed.state_attrs, "score_sum", "score_count", "_step_history")

    def setup(self) -> None:
        super().setup()
        p = self.params
        # score_j = score_sum[j] / score_count[j], both seeded with one entry score_initial.
        self.score_sum = torch.full((p.K,), min(abs(p.score_initial), p.score_clip), dtype=torch.float64)
        self.score_count = torch.ones(p.K, dtype=torch.float64)
        self.probabilities = seed_probabilities(self.scores())
        # Per round: every client's (seed indices, projected gradients) of its local steps.
        self._step_history: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}

    def scores(self) -> torch.Tensor:
        return self.score_sum / self.score_count

    def _add_entries(self, idx: torch.Tensor, values: torch.Tensor) -> None:
        clipped = values.to(torch.float64).abs().clamp(max=self.params.score_clip)
        self.score_sum.index_add_(0, idx, clipped)
        self.score_count.index_add_(0, idx, torch.ones_like(clipped))

    def _record_steps(self, round_idx: int, draws: torch.Tensor, grads: torch.Tensor) -> None:
        if self.params.pro_scores == "step-history":
            self._step_history.setdefault(round_idx, []).append((draws, grads))

    def _update_scores(self, round_idx: int, payloads: list[Payload], delta: torch.Tensor) -> None:
        history = self._step_history.pop(round_idx, [])
        if self.params.pro_scores == "step-history":
            for draws, grads in history:
                self._add_entries(draws, grads)
        else:
            # n * |dA| is, with equal weights, |sum_i a_i[j]|: per-client units, whatever the cohort size.
            idx = torch.nonzero(delta).flatten()
            self._add_entries(idx, len(payloads) * delta[idx].to(torch.float64))
        self.probabilities = seed_probabilities(self.scores())

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["seed_sampling"] = "pro"
        out["pro_scores"] = self.params.pro_scores
        # round-sums: p is a function of the broadcast dA history; step-history: of values never sent.
        out["probabilities_from_broadcasts"] = self.params.pro_scores == "round-sums"
        return out
