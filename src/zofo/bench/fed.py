"""The steps being timed: the two forward passes, zofo's ZO step, a MeZO-style reference step, and the
FeedSign and FedKSeed methods themselves (``zofo.methods``), driven round by round without the engine.

Nothing here re-implements a method: the ZO step is FedKSeed's local step (``zo_sgd_step``), the
FeedSign rounds are FeedSign's ``client_update`` / ``aggregate`` / ``end_round``, and the FedKSeed
server is FedKSeed's ``aggregate``, told its cohort through ``expect_cohort``. Only the FedKSeed
uploads are drawn instead of trained (the server's cost depends on which entries are nonzero), and
the MeZO-style step is an outside reference by design."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence

import torch

from zofo.bench.models import BenchModel, batch_loss
from zofo.core.config import ZOConfig
from zofo.core.seeds import seed32, torch_rng
from zofo.core.zo import SeededDirections
from zofo.methods.base import ClientData, Payload, RunContext
from zofo.methods.fedkseed import FedKSeed, FedKSeedParams, zo_sgd_step
from zofo.methods.feedsign import FeedSign, FeedSignParams

EPS = ZOConfig().eps  # the perturbation scale a run uses by default
# A step small enough to leave the model essentially where it was (every axpy still runs in full);
# the weights are restored after each measurement anyway.
LR = 1e-6


def zo_config(mode: str, generator: str) -> ZOConfig:
    return ZOConfig(eps=EPS, mode=mode, generator=generator)


def directions(params: Sequence[torch.Tensor], mode: str, generator: str) -> SeededDirections:
    return SeededDirections(params, EPS, mode, cache_size=1, generator=generator)


def forward_pair(loss: Callable[[], torch.Tensor]) -> None:
    """The floor of a two-point ZO step: its two forward passes, nothing else."""
    with torch.no_grad():
        float(loss())
        float(loss())


def zo_step(dirs: SeededDirections, seed: int, loss: Callable[[], torch.Tensor], lr: float = LR) -> float:
    """One ZO-SGD step with zofo's seeded directions: a FedKSeed client's local step itself
    (``zofo.methods.fedkseed.zo_sgd_step``: estimate, then w -= lr * g * z, the restore folded into the
    update when ``dirs.fuse``), at the bench's step size."""
    return zo_sgd_step(dirs, seed, loss, lr)


def memory_workload(
    kind: str, params: Sequence[torch.Tensor], loss: Callable[[], torch.Tensor], seed: int, generator: str
) -> None:
    """The work whose peak memory a memory row reports, run twice so that state made on first use
    (AdamW's moments, fast mode's z buffers while the previous seed's are cached) is alive at once:
    "inference" (two no-grad forwards), "zo_lean" / "zo_fast" (zofo's ZO step) or "adamw" (a step)."""
    if kind == "inference":
        for _ in range(2):
            forward_pair(loss)
    elif kind in ("zo_lean", "zo_fast"):
        dirs = directions(params, kind.removeprefix("zo_"), generator)
        for i in range(2):
            zo_step(dirs, seed32(seed, "bench", "memory", i), loss)
        dirs.clear()
    else:
        opt = torch.optim.AdamW(params, lr=LR)
        for _ in range(2):
            opt.zero_grad(set_to_none=True)
            loss().backward()
            opt.step()
        opt.zero_grad(set_to_none=True)


def _rng_devices(params: Sequence[torch.Tensor]) -> list[int]:
    # fork_rng saves and restores the CPU generator and the CUDA generators listed here.
    return sorted({p.device.index or 0 for p in params if p.device.type == "cuda"})


def mezo_reference_step(
    params: Sequence[torch.nn.Parameter],
    loss: Callable[[], torch.Tensor],
    seed: int,
    eps: float = EPS,
    lr: float = LR,
) -> float:
    """A MeZO-style step: the *global* generator reseeded with ``seed`` before each of the four passes
    over the parameters (+eps, -2 eps, +eps, update), a fresh ``torch.normal`` draw per parameter each
    time, and out-of-place arithmetic (``p.data = p.data + c * z``) as MeZO's trainer writes it. Four
    regenerations per step. Returns the projected gradient g; the weights end at w - lr * g * z (to the
    rounding of the restore). The global RNG state is put back afterwards: a benchmark must not shift
    anybody's random numbers."""

    def pass_over(scale: float) -> None:
        torch.manual_seed(seed)
        for p in params:
            z = torch.normal(mean=0.0, std=1.0, size=p.shape, device=p.device, dtype=p.dtype)
            p.data = p.data + scale * z

    with torch.random.fork_rng(devices=_rng_devices(params)), torch.no_grad():
        pass_over(eps)
        l_plus = float(loss())
        pass_over(-2.0 * eps)
        l_minus = float(loss())
        pass_over(eps)
        g = (l_plus - l_minus) / (2.0 * eps)
        pass_over(-lr * g)
    return g


def _context(bm: BenchModel, seed: int, clients: int, mode: str, generator: str) -> RunContext:
    return RunContext(
        model=bm.model,
        loss=lambda batch: batch_loss(bm, batch),
        zo=zo_config(mode, generator),
        seed=seed,
        num_clients=clients,
        cohort_size=clients,
    )


class FeedSignRounds:
    """zofo's FeedSign (``zofo.methods.feedsign``) on one model: every call of ``step`` is one round of
    ``len(batches)`` clients, each on its own fixed batch, then the server's vote and update.

    fresh=False: the round's one z serves every client (zofo's simulation, fast mode); fresh=True: the
    z cache is emptied before each client, so each regenerates z once, as a client on its own device."""

    def __init__(
        self,
        bm: BenchModel,
        batches: Sequence[Mapping[str, torch.Tensor]],
        seed: int,
        generator: str = "torch",
    ):
        ctx = _context(bm, seed, len(batches), "fast", generator)
        self.method = FeedSign(FeedSignParams(lr=LR), ctx)
        self.method.setup()
        self.clients = [
            ClientData(
                client_id=k, num_examples=1, batches=itertools.repeat(b), batch_size=len(b["input_ids"])
            )
            for k, b in enumerate(batches)
        ]

    @property
    def dirs(self) -> SeededDirections:
        return self.method.dirs

    def step(self, round_idx: int, fresh: bool) -> None:
        payloads = []
        for client in self.clients:
            if fresh:
                self.method.dirs.clear()
            payloads.append(self.method.client_update(round_idx, client))
        self.method.aggregate(round_idx, payloads)
        self.method.end_round(round_idx)


def fedkseed_history(k: int, clients: int, tau: int, rounds: int, seed: int) -> list[list[Payload]]:
    """The uploads of ``rounds`` FedKSeed rounds: each client draws ``tau`` seeds uniformly and adds a
    projected gradient ~ N(0, 1) to each (what a client's ``a`` holds after its local steps), sent as
    fp32. Drawn rather than trained: the server's cost depends only on which entries are nonzero."""
    g = torch_rng(seed, "bench", "fedkseed-pool")
    history = []
    for _ in range(rounds):
        payloads = []
        for _ in range(clients):
            draws = torch.randint(0, k, (tau,), generator=g)
            grads = torch.randn(tau, generator=g, dtype=torch.float64)
            a = torch.zeros(k, dtype=torch.float64).index_add_(0, draws, grads)
            payloads.append({"a": a.to(torch.float32)})
        history.append(payloads)
    return history


class FedKSeedServer:
    """zofo's FedKSeed server (``zofo.methods.fedkseed``) whose pool already holds every round of a
    history but the last; ``step`` runs the server's ``aggregate`` on the last round's uploads."""

    def __init__(
        self,
        bm: BenchModel,
        history: Sequence[Sequence[Payload]],
        k: int,
        tau: int,
        seed: int,
        server_update: str,
        mode: str,
        generator: str,
    ):
        clients = len(history[-1])
        ctx = _context(bm, seed, clients, mode, generator)
        params = FedKSeedParams(lr=LR, K=k, local_steps=tau, weighting="uniform", server_update=server_update)
        self.method = FedKSeed(params, ctx)
        self.method.setup()
        self.cohort = [(c, 1) for c in range(clients)]
        # The earlier rounds' changes go into the pool as aggregate() adds them; their weight updates
        # are not applied: the timed update (incremental: this round's change; rebuild: w0 plus the
        # whole pool) does not depend on the weights it starts from.
        for payloads in history[:-1]:
            self.method.pool += self.method.combine_sums(self.cohort, list(payloads)).to(torch.float64)
        self.last = list(history[-1])

    @property
    def dirs(self) -> SeededDirections:
        return self.method.dirs

    def step(self, round_idx: int) -> None:
        # The engine's client_update records each round's cohort on the server side; here no client
        # trains, so the cohort the server sampled is recorded directly.
        self.method.expect_cohort(round_idx, self.cohort)
        self.method.aggregate(round_idx, self.last)

    @property
    def regenerations(self) -> int:
        return self.method.server_regenerations
