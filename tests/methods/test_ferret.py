"""Ferret: the defining properties of its projection and reconstruction, and its wire.

1. The paper's reconstruction is unbiased: the mean over seeds of V V^T delta / (rho K) approaches delta at
   the rate its exact variance predicts, and its cosine with delta grows with K.
2. The official code's scale d/K is d rho (about 1/3) times the paper's 1/(rho K), with rho the exact
   second moment of the truncated normal; a reconstruction at that scale fails check 1.
3. The server (its own instance, its own model) rebuilds, from the decoded payloads alone, the update the
   clients intended; a receiving client rebuilds the same model from the decoded downlink alone.
4. Uplink and downlink bits equal the documented formulas.

Numbers used throughout, for v ~ N(0, 1) truncated to [-c, c], c = 1/sqrt(d), Z = 2 Phi(c) - 1:
rho = E[v^2] = 1 - 2 c phi(c) / Z and, integrating x^3 * x phi(x) by parts, E[v^4] = 3 rho - 2 c^3 phi(c) / Z.
One direction's reconstruction v v^T delta / rho has E||. - delta||^2 = (d + E[v^4]/rho^2 - 2) ||delta||^2
(only the i = j terms of E[v_i v_j v_k^2] survive), and K iid directions divide that by K.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Iterator

import pytest
import torch
from conftest import load_tiny_llama, tiny_run_config

from zofo.core.config import ConfigError, RunConfig, ZOConfig, build
from zofo.core.seeds import derive, torch_rng
from zofo.core.zo import trainable_parameters
from zofo.engine.comm import transmit
from zofo.engine.loop import run
from zofo.methods import ferret
from zofo.methods.base import ClientData, RunContext

D = 50  # the block of checks 1 and 2: small enough for thousands of seeds in a second


def phi(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def rho_closed_form(c: float) -> float:
    return 1.0 - 2.0 * c * phi(c) / math.erf(c / math.sqrt(2.0))


def fourth_moment(c: float) -> float:
    return 3.0 * rho_closed_form(c) - 2.0 * c**3 * phi(c) / math.erf(c / math.sqrt(2.0))


def relative_mse(d: int, k: int) -> float:
    """E||recon - delta||^2 / ||delta||^2 of the unbiased reconstruction with k directions."""
    c = 1.0 / math.sqrt(d)
    rho = rho_closed_form(c)
    return (d + fourth_moment(c) / rho**2 - 2.0) / k


def fixed_delta() -> torch.Tensor:
    return torch.randn(D, generator=torch.Generator().manual_seed(7))


Recon = Callable[[torch.Tensor, int, int], torch.Tensor]


def recon_at_scale(scale: Callable[[int], float]) -> Recon:
    """One client's reconstruction of a one-block delta with k directions from ``seed``: sum_j v_j gamma_j,
    gamma_j = scale(k) * v_j . delta."""

    def recon(delta: torch.Tensor, seed: int, k: int) -> torch.Tensor:
        seeds = ferret.direction_seeds(seed, 0, k)
        gamma = ferret.project(delta, seeds, scale(k))
        return ferret.rebuild(seeds, gamma.tolist(), torch.zeros(delta.numel()))

    return recon


paper_recon = recon_at_scale(lambda k: 1.0 / (ferret.block_rho(D) * k))
code_recon = recon_at_scale(lambda k: D / k)


def assert_unbiased(recon: Recon, k: int = 4) -> None:
    """The mean of s reconstructions has E[r^2] = relative_mse / s for r = ||mean - delta|| / ||delta||.
    r^2 sums 50 coordinates' squared errors, so its relative spread is about sqrt(2/50) = 0.2: [0.25, 2.5]
    times the prediction is > 3.5 spreads on either side, at every checkpoint (so r falls as 1/sqrt(s)).
    A bias b adds b^2 to r^2: at s = 4000 any |b| above 7% fails (the code scale has b = 0.67)."""
    delta = fixed_delta().double()
    pred = relative_mse(D, k)
    total = torch.zeros(D, dtype=torch.float64)
    for s in range(1, 4001):
        total += recon(delta.float(), s, k).double()
        if s in (250, 1000, 4000):
            r2 = float(((total / s - delta).norm() / delta.norm()) ** 2)
            assert 0.25 * pred / s <= r2 <= 2.5 * pred / s, (
                f"after {s} seeds r^2 = {r2:.3g}, E = {pred / s:.3g}"
            )


# ---- 1. unbiased reconstruction ---------------------------------------------------------------------


def test_paper_reconstruction_is_unbiased():
    assert_unbiased(paper_recon)


def test_cosine_with_delta_grows_with_k():
    delta = fixed_delta()
    means = []
    for k in (1, 4, 16, 64, 256):
        cos = [
            float(torch.nn.functional.cosine_similarity(paper_recon(delta, s, k), delta, 0))
            for s in range(50)
        ]
        means.append(sum(cos) / len(cos))
    # About 1 / sqrt(1 + relative_mse): 0.14, 0.27, 0.49, 0.75, 0.92; means over 50 seeds vary by < 0.03.
    assert all(a < b for a, b in zip(means, means[1:], strict=False)), means
    assert means[0] < 0.3 and means[-1] > 0.85, means


# ---- 2. paper scale vs official-code scale; rho exact ---------------------------------------------------


@pytest.mark.parametrize("d", [1, 2, 50, 1000, 10**6])
def test_rho_is_the_exact_second_moment(d):
    c = 1.0 / math.sqrt(d)
    # The closed form loses digits to cancellation as c -> 0 (about 1e-16 / (c^2 / 3) relative).
    assert ferret.block_rho(d) == pytest.approx(rho_closed_form(c), rel=1e-12 + 1e-15 * d)
    # Second order in c^2 = 1/d: E[x^2] = (c^2/3)(1 - 3c^2/10) / (1 - c^2/6) + O(c^6)
    #                                   = (c^2/3)(1 - 2c^2/15) + O(c^6).
    assert abs(d * ferret.block_rho(d) - (1.0 - 2.0 / (15.0 * d)) / 3.0) < 0.01 / d**2


def test_sampler_draws_the_truncated_normal():
    g = torch.Generator().manual_seed(0)
    for c in (1.0, 0.1):
        v = ferret.truncated_normal_(torch.empty(1_000_000), c, g).double()
        assert float(v.abs().max()) <= c
        # Sampling spreads: sqrt(Var[v^2] / n) is < 0.1% of rho and < 0.2% of E[v^4]; a uniform law
        # would be off by 14% (c = 1) in the second moment.
        assert float((v**2).mean()) == pytest.approx(rho_closed_form(c), rel=5e-3)
        assert float((v**4).mean()) == pytest.approx(fourth_moment(c), rel=1e-2)
        assert abs(float(v.mean())) < 5 * math.sqrt(rho_closed_form(c) / v.numel())
    w = ferret.direction(3, torch.empty(D))
    assert float(w.abs().max()) <= 1 / math.sqrt(D) and torch.equal(w, ferret.direction(3, torch.empty(D)))


def test_code_scale_is_d_rho_times_the_paper_scale_and_biased():
    k = 8
    rho = ferret.block_rho(D)
    delta = fixed_delta()
    seeds = ferret.direction_seeds(11, 0, k)
    paper = ferret.project(delta, seeds, 1.0 / (rho * k))
    code = ferret.project(delta, seeds, D / k)
    torch.testing.assert_close(code, paper * (D * rho_closed_form(1 / math.sqrt(D))), rtol=1e-6, atol=0)
    assert D * rho == pytest.approx(0.33245, abs=1e-5)  # (1 - 2/(15 * 50)) / 3 to O(1/d^2)
    assert 10**6 * ferret.block_rho(10**6) == pytest.approx(1 / 3, abs=1e-7)
    with pytest.raises(AssertionError, match="after 250 seeds"):
        assert_unbiased(code_recon)


# ---- allocation and the official rule -----------------------------------------------------------------


def test_allocation_sums_to_k_with_one_per_block_and_follows_the_weights():
    assert ferret.allocate([1.0, 1.0, 2.0], 8) == [2, 2, 4]
    assert ferret.allocate([1e-9, 1.0, 1.0], 5) == [1, 2, 2]  # the tiny block keeps its one direction
    assert ferret.allocate([1.0, 1.0, 1.0], 4) == [2, 1, 1]  # largest remainder, ties to the lower index
    assert ferret.allocate([0.0, 0.0], 3) == [2, 1]
    assert ferret.allocate([float("nan"), 1.0], 3) == [1, 2]
    parts = ferret.allocate([5.0, 0.1, 0.2, 300.0, 7.0], 200)
    assert sum(parts) == 200 and min(parts) >= 1
    assert parts[3] > parts[4] > parts[0] > 1
    with pytest.raises(ValueError):
        ferret.allocate([1.0] * 5, 4)


def test_official_counts_follow_the_official_rule():
    assert ferret.official_counts([3.0, 1.5, 1e-3, float("nan")], 200) == [200, 100, 2, 2]
    assert ferret.official_counts([0.0, 0.0], 10) == [2, 2]
    idx = ferret.official_indices(5, 200, 17)
    assert len(set(idx)) == 17 and all(0 <= i < 200 for i in idx)


def test_blocks_of_tiny_llama():
    params = trainable_parameters(load_tiny_llama().model)
    assert len(ferret.blocks(params, "tensor")) == 20
    # Sizes (embedding, then per layer q k v o gate up down ln ln, then the final norm): median 1024, so
    # target int(0.9 * 1024) = 921: the embedding, each projection alone, and the two layer norms together
    # (the final norm joins the last pair): 1 + 2 * 8 = 17 blocks.
    packed = ferret.blocks(params, "packed")
    assert len(packed) == 17
    assert packed[0] == [0] and packed[8] == [8, 9] and packed[-1] == [17, 18, 19]


# ---- 3 and 4: a round on tiny-llama -------------------------------------------------------------------

SEED, ROUND, K_PAPER, K_POOL = 5, 3, 40, 8


def batches(client: int) -> Iterator[dict[str, torch.Tensor]]:
    g = torch_rng(SEED, "test-batches", client)
    while True:
        yield {"input_ids": torch.randint(0, 2000, (2, 8), generator=g)}


def make(params: ferret.FerretParams) -> ferret.Ferret:
    """A Ferret instance on its own tiny-llama (same initial weights every time), embedding frozen: it is
    98% of the model and the properties do not depend on it."""
    model = load_tiny_llama().model
    model.get_input_embeddings().weight.requires_grad_(False)

    def loss(batch):
        return model(input_ids=batch["input_ids"], labels=batch["input_ids"]).loss

    ctx = RunContext(model=model, loss=loss, zo=ZOConfig(), seed=SEED, num_clients=2, cohort_size=2)
    m = ferret.Ferret(params, ctx)
    m.setup()
    return m


def params_for(variant: str, weighting: str = "uniform", clip: float = 10.0) -> ferret.FerretParams:
    k = K_PAPER if variant == "paper" else K_POOL
    data = {"lr": 1e-2, "local_steps": 3, "K": k, "variant": variant, "weighting": weighting, "clip": clip}
    return build(ferret.FerretParams, data, "method.params")


class Round:
    """Two clients (on one instance), transmitted; a server on a second instance aggregates the decoded
    uplinks; a receiver on a third instance applies the decoded downlink."""

    def __init__(self, params: ferret.FerretParams):
        self.params = params
        client = make(params)
        self.sizes = [40, 120]
        self.deltas, self.payloads, self.bits_up = [], [], []
        for cid in range(2):
            data = ClientData(client_id=cid, num_examples=self.sizes[cid], batches=batches(cid), batch_size=2)
            deltas = client.local_delta(data)
            payload = client.encode(ROUND, cid, deltas, self.sizes[cid])
            got, bits = transmit(payload)
            self.deltas.append(deltas)
            self.payloads.append(got)
            self.bits_up.append(bits)
        # The paper's clients each draw a seed; the official code's share the run's seed pool.
        paper = params.variant == "paper"
        self.client_seeds = [client.client_seed(ROUND, cid) for cid in range(2)] if paper else None
        self.server = make(params)
        self.before = [w.clone() for w in self.server.global_weights]
        down, self.bits_down = transmit(self.server.aggregate(ROUND, self.payloads))
        self.receiver = make(params)
        self.receiver.apply_broadcast(down)

    def omegas(self) -> list[float]:
        if self.params.weighting == "examples":
            return [s / sum(self.sizes) for s in self.sizes]
        return [0.5, 0.5]

    def applied(self) -> list[torch.Tensor]:
        """The server's w_before - w_after, per block, flat float64."""
        s = self.server
        return [
            torch.cat([(self.before[i] - s.global_weights[i]).reshape(-1).double() for i in b])
            for b in s.blocks
        ]


def dense(seeds: list[int], d: int) -> torch.Tensor:
    """The directions as rows of a float64 matrix."""
    return (
        torch.stack([ferret.direction(s, torch.empty(d)).double() for s in seeds])
        if seeds
        else torch.zeros(0, d)
    )


def intended_paper(r: Round) -> list[torch.Tensor]:
    """slr * sum_i omega_i V_il V_il^T delta_il / (rho_l K_il), from the clients' own deltas and seeds."""
    s = r.server
    out = [torch.zeros(d, dtype=torch.float64) for d in s.sizes]
    for seed, deltas, omega in zip(r.client_seeds, r.deltas, r.omegas(), strict=True):
        norms = [float(x.norm()) for x in deltas]
        counts = ferret.allocate([n / rho for n, rho in zip(norms, s.rhos, strict=True)], r.params.K)
        assert sum(counts) == r.params.K and min(counts) >= 1
        for blk, (delta, k) in enumerate(zip(deltas, counts, strict=True)):
            v = dense(ferret.direction_seeds(seed, blk, k), s.sizes[blk])
            out[blk] += omega * (v.T @ (v @ delta.double())) / (s.rhos[blk] * k)
    return [r.params.server_lr * u for u in out]


def intended_official(r: Round) -> list[torch.Tensor]:
    """slr * sum_k clip(A_lk v_lk), A_lk = sum_i omega_i (d_l / K_il) v_lk . delta_il over the clients that
    drew k, K_il = max(int(||delta_il|| / max_m ||delta_im|| * K), 2)."""
    s, p = r.server, r.params
    pool = [derive(SEED, "ferret", "pool", k) for k in range(p.K)]
    out = []
    for blk, d in enumerate(s.sizes):
        v = dense([derive(pool[k], blk) for k in range(p.K)], d)
        coords = torch.zeros(p.K, dtype=torch.float64)
        for cid, (deltas, omega) in enumerate(zip(r.deltas, r.omegas(), strict=True)):
            norms = [float(x.norm()) for x in deltas]
            k_l = max(int(norms[blk] / max(norms) * p.K), 2)
            idx = ferret.official_indices(derive(SEED, "ferret", "indices", ROUND, cid, blk), p.K, k_l)
            coords[idx] += omega * (d / k_l) * (v[idx] @ deltas[blk].double())
        terms = coords[:, None] * v
        norms = terms.norm(dim=1, keepdim=True)
        out.append(p.server_lr * (terms * torch.clamp(p.clip / (norms + 1e-8), max=1.0)).sum(0))
    return out


CASES = [("paper", "uniform", 10.0), ("paper", "examples", 10.0), ("official-code", "uniform", 10.0)]
CASES += [("official-code", "examples", 1e-3)]  # a clip small enough to bind on every term


@pytest.mark.parametrize(("variant", "weighting", "clip"), CASES)
def test_server_rebuilds_the_intended_update_from_the_wire(variant, weighting, clip):
    r = Round(params_for(variant, weighting, clip))
    expected = intended_paper(r) if variant == "paper" else intended_official(r)
    for got, want in zip(r.applied(), expected, strict=True):
        # w is fp32 with |w| <= ~1: the applied difference carries ~1e-7 rounding; updates are >> 1e-6.
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    assert max(float(u.abs().max()) for u in expected) > 1e-4
    if clip < 1:
        assert any(float(u.norm()) > 0.5 * clip * r.params.server_lr for u in expected)
    for a, b in zip(r.server.global_weights, r.receiver.global_weights, strict=True):
        assert torch.equal(a, b), "a client rebuilding from the downlink alone must get the server's model"
    for w, p in zip(r.server.global_weights, r.server.trainable, strict=True):
        assert torch.equal(w, p.detach()), "the working model holds the new global weights"


@pytest.mark.parametrize(("variant", "weighting", "clip"), CASES)
def test_bits_match_the_formulas(variant, weighting, clip):
    r = Round(params_for(variant, weighting, clip))
    k, n, num_blocks = r.params.K, 2, len(r.server.blocks)
    examples = 32 if weighting == "examples" else 0
    if variant == "paper":
        up = 32 + k + 32 * k + examples  # seed, block-start bits, gammas (+ example count)
        down = n * up
    else:
        assert num_blocks == 16  # tiny-llama without its embedding, packed
        up = 32 * k * num_blocks + examples
        down = 32 * k * num_blocks
    assert r.bits_up == [up, up]
    assert r.bits_down == down
    d = sum(r.server.sizes)
    assert r.server.formula_bits(d, n) == (up, down)
    assert r.server.describe()["uplink_bits"] == up


def test_paper_variant_needs_k_at_least_the_number_of_blocks():
    with pytest.raises(ConfigError, match=r"number of blocks \(19 tensor"):
        make(ferret.FerretParams(K=18))
    make(ferret.FerretParams(K=18, blocks="packed"))  # 16 packed blocks


def test_params_resolve_by_variant():
    paper, code = ferret.FerretParams(), ferret.FerretParams(variant="official-code")
    assert (paper.server_lr, paper.block_kind) == (1.0, "tensor")
    assert (code.server_lr, code.block_kind) == (10.0, "packed")
    with pytest.raises(ConfigError):
        ferret.FerretParams(variant="official-code", K=1)
    with pytest.raises(ConfigError):
        ferret.FerretParams(slr=0.0)


def test_official_code_variant_end_to_end(tmp_path):
    """The engine's logged bits for the official-code variant on full tiny-llama (17 packed blocks); a
    pool of 4 seeds keeps the 977k-entry embedding block to at most 4 directions."""
    cfg = tiny_run_config(
        "ferret",
        {"variant": "official-code", "K": 4, "lr": 1e-3},
        federation={"rounds": 2, "eval_every": 2, "clients_per_round": 2},
    )
    out = run(RunConfig.from_dict(cfg), tmp_path / "run", progress=False)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["status"] == "ok", meta.get("reason")
    assert meta["describe"]["variant"] == "official-code" and meta["describe"]["num_blocks"] == 17
    rows = [json.loads(x) for x in (out / "rounds.jsonl").read_text().splitlines() if x.strip()]
    assert rows[-1]["bits_up_cum"] == 2 * 2 * 32 * 4 * 17
    assert rows[-1]["bits_down_cum"] == 2 * 2 * 32 * 4 * 17


# ---- one registered name, two protocol classes; local training is FedAvg's loop without a clip ---------


def test_the_registered_name_builds_the_class_its_variant_names():
    from zofo.core.registry import METHODS

    assert METHODS.get("ferret") is ferret.Ferret
    assert type(make(params_for("paper"))) is ferret.FerretPaper
    assert type(make(params_for("official-code"))) is ferret.FerretOfficialCode
    # What travels is each protocol's own: the paper's seed, block starts and gammas; the code's L x K matrix.
    paper, code = ferret.FerretParams(), ferret.FerretParams(variant="official-code", weighting="examples")
    assert ferret.Ferret.payload_kinds(paper) == {
        "seed": "seed",
        "block_starts": "structure",
        "gamma": "scalar",
    }
    assert ferret.Ferret.payload_kinds(code) == {"coords": "scalar", "num_examples": "count"}


def test_params_fields_and_defaults_are_unchanged():
    """Runs are identified by their config; Ferret's parameters and their defaults are part of every
    committed Ferret run's metadata, so they stay exactly these."""
    assert dataclasses.asdict(ferret.FerretParams()) == {
        "lr": 1e-4,
        "local_steps": 10,
        "optimizer": "sgd",
        "K": 200,
        "slr": None,
        "variant": "paper",
        "clip": 10.0,
        "blocks": "auto",
        "weighting": "uniform",
    }


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_local_training_is_fedavgs_loop_without_a_gradient_clip(optimizer):
    """Ferret's client delta is exactly minus FedAvg's update with the same optimiser, lr and steps and
    ``max_grad_norm: null``; FedAvg's default clip (norm 1) binds at this lr and gives another update."""
    from zofo.methods.fedavg import FedAvg, FedAvgParams

    def fedavg_update(max_grad_norm: float | None) -> torch.Tensor:
        model = make(params_for("paper")).ctx.model  # the same initial weights and frozen embedding
        ctx = RunContext(
            model=model,
            loss=lambda b: model(input_ids=b["input_ids"], labels=b["input_ids"]).loss,
            zo=ZOConfig(),
            seed=SEED,
            num_clients=2,
            cohort_size=2,
        )
        params = FedAvgParams(lr=1e-2, local_steps=3, optimizer=optimizer, max_grad_norm=max_grad_norm)
        m = FedAvg(params, ctx)
        m.setup()
        return m.client_update(ROUND, ClientData(0, 40, batches(0), 2))["update"]

    m = make(
        build(ferret.FerretParams, {**params_for("paper").__dict__, "optimizer": optimizer}, "method.params")
    )
    delta = torch.cat(m.local_delta(ClientData(0, 40, batches(0), 2)))
    assert m.local_training().max_grad_norm is None
    assert m.describe()["local_training"]["max_grad_norm"] is None
    assert "--grad_clip" in m.describe()["grad_clip"]
    assert torch.equal(delta, -fedavg_update(None))
    assert not torch.equal(delta, -fedavg_update(1.0))
