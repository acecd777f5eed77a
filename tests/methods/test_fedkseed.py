"""FedKSeed and FedKSeed-Pro: the defining properties, against oracles independent of zofo.core.zo.

- linearity: the server's model (w0 - lr * sum_j A[j] z(C_j)) is the omega-weighted average of the clients'
  actual local models, captured before the working model is reset;
- catch-up: a client that replays A_now - A_then once reaches the weights of a client that applied every
  broadcast, and the counted regenerations are the nonzero entries of that change;
- incremental and rebuild server updates give the same weights;
- Pro: p = softmax(minmax(score)) by hand, from the broadcasts alone (round-sums) or from the per-step
  values (step-history), and seeds with larger scores are drawn more often;
- bits: K fp32 up per client, K fp32 down per client.

z is regenerated with a plain torch.Generator per parameter (conftest.oracle_z). The (tied) embedding is
frozen in most tests to keep them fast, and the loss reads the final hidden states (no 30k-word head):
a real, nonlinear forward pass of the tiny Llama whose projected gradients change from step to step.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import pytest
import torch
from conftest import ZO_RESTORE_ATOL, load_tiny_llama, oracle_z, unique_trainable

from zofo.core.config import ConfigError, ZOConfig
from zofo.core.registry import METHODS
from zofo.core.seeds import seed32
from zofo.engine.comm import transmit
from zofo.methods.base import ClientData, RunContext
from zofo.methods.fedkseed import FedKSeed, FedKSeedParams, FedKSeedPro, FedKSeedProParams, seed_probabilities

SEED = 11
EPS = 1e-3
LR = 1e-3
# Float tolerance for comparing two routes to the same weights: each route rounds every add_ to half an
# ulp of |w| <= ~1 (6e-8), over a few hundred adds (observed: <= 1e-6 after three rounds). One seed's
# contribution lr * |dA_j| * max|z| is >= 1e-4 in these runs (median ~5e-3), so a missing, doubled or
# misweighted seed fails.
WEIGHT_ATOL = 1e-5


class Harness:
    """A FedKSeed(-Pro) method on tiny-llama with a hidden-state regression loss per client."""

    def __init__(
        self,
        name: str = "fedkseed",
        sizes: tuple[int, ...] = (1, 3, 6),
        mode: str = "fast",
        loss: str = "hidden",
        whole_model: bool = False,
        **params,
    ):
        self.model = load_tiny_llama().model
        if not whole_model:
            self.model.get_input_embeddings().weight.requires_grad_(False)
        self.params = unique_trainable(self.model)
        self.target = self.model.model.norm.weight
        self.t_idx = next(i for i, p in enumerate(self.params) if p is self.target)
        self.sizes = sizes
        self.w0 = [p.detach().clone() for p in self.params]

        def hidden_loss(batch):
            h = self.model.model(input_ids=batch["input_ids"]).last_hidden_state
            return (h - batch["target"]).square().mean()

        def linear_loss(batch):
            # Linear in the final norm weight: the projected gradient is c * sum(z_norm), known in advance.
            return batch["c"] * self.target.double().sum()

        ctx = RunContext(
            model=self.model,
            loss=hidden_loss if loss == "hidden" else linear_loss,
            zo=ZOConfig(eps=EPS, mode=mode),
            seed=SEED,
            num_clients=len(sizes),
            cohort_size=len(sizes),
        )
        cls = METHODS.get(name)
        self.method: FedKSeed = cls(cls.Params(**{"lr": LR, "K": 64, "local_steps": 6, **params}), ctx)
        self.method.setup()

    def batches(self, k: int, r: int) -> Iterator[dict[str, torch.Tensor]]:
        g = torch.Generator().manual_seed(1000 * r + k)
        target = torch.randn(1, 1, 32, generator=g)  # each client regresses towards its own vector
        while True:
            yield {
                "input_ids": torch.randint(0, 1000, (2, 6), generator=g),
                "target": target,
                "c": torch.tensor(float(k + 1), dtype=torch.float64),
            }

    def client(self, k: int, r: int) -> ClientData:
        return ClientData(client_id=k, num_examples=self.sizes[k], batches=self.batches(k, r))

    def round(self, r: int, cohort: list[int] | None = None) -> tuple[list[dict], dict]:
        cohort = list(range(len(self.sizes))) if cohort is None else cohort
        payloads = [transmit(self.method.client_update(r, self.client(k, r)))[0] for k in cohort]
        broadcast = transmit(self.method.aggregate(r, payloads))[0]
        return payloads, broadcast

    def z(self, j: int) -> list[torch.Tensor]:
        return oracle_z(self.params, self.method.candidates[j])

    def weights(self) -> list[torch.Tensor]:
        return [p.detach().clone() for p in self.params]


def apply_pool_change(weights: list[torch.Tensor], h: Harness, change: torch.Tensor) -> list[torch.Tensor]:
    """A client's catch-up, with oracle z: w - lr * sum_j change[j] z(C_j)."""
    out = [w.clone() for w in weights]
    for j in torch.nonzero(change).flatten().tolist():
        for w, z in zip(out, h.z(j), strict=True):
            w.add_(z, alpha=-LR * float(change[j]))
    return out


def assert_weights_close(a: list[torch.Tensor], b: list[torch.Tensor], atol: float = WEIGHT_ATOL) -> None:
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=atol)


def max_change(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True))


# ---- linearity: aggregating K scalars is FedAvg of the local models ------------------------------------


@pytest.mark.parametrize("server_update", ["rebuild", "incremental"])
@pytest.mark.parametrize("weighting", ["examples", "uniform"])
def test_pool_rebuild_is_the_weighted_average_of_local_models(server_update, weighting):
    h = Harness(server_update=server_update, weighting=weighting)
    pool = torch.zeros(h.method.params.K, dtype=torch.float64)
    _, b1 = h.round(1)
    pool += b1["delta"].double()

    # Capture each client's real local model at the moment the method resets the working model.
    local: list[list[torch.Tensor]] = []
    restore = h.method._restore_global

    def capture_then_restore() -> None:
        local.append(h.weights())
        restore()

    h.method._restore_global = capture_then_restore
    start = h.weights()
    _, b2 = h.round(2)
    pool += b2["delta"].double()
    assert len(local) == 3

    omega = torch.tensor(h.sizes if weighting == "examples" else [1, 1, 1], dtype=torch.float64)
    omega = omega / omega.sum()
    average = [
        sum(float(o) * loc[i].double() for o, loc in zip(omega, local, strict=True))
        for i in range(len(start))
    ]
    server = h.weights()
    assert_weights_close(server, [a.float() for a in average])

    # The same weights from w0 and the pool alone (the paper's rebuild), with oracle z.
    assert_weights_close(server, apply_pool_change(h.w0, h, pool))

    # Not vacuous: the clients moved apart and the round moved the model far beyond the tolerance.
    assert max_change(server, start) > 100 * WEIGHT_ATOL
    assert max_change(local[0], local[2]) > 100 * WEIGHT_ATOL
    if weighting == "examples":  # the other weighting would give a visibly different model
        wrong = [sum(loc[i].double() for loc in local) / 3 for i in range(len(start))]
        assert max_change(server, [w.float() for w in wrong]) > 100 * WEIGHT_ATOL


def test_local_model_is_global_minus_lr_a_z():
    """Each local step is w -= lr * g * z(C_j), so the local model is w - lr * sum_j a[j] z(C_j)."""
    h = Harness(local_steps=12, K=4)  # K << tau: seeds repeat, and their a[j] sums several steps
    h.round(1)
    local = []
    restore = h.method._restore_global
    h.method._restore_global = lambda: (local.append(h.weights()), restore())
    start = h.weights()
    payload = h.method.client_update(2, h.client(1, 2))
    assert int(torch.count_nonzero(payload["a"])) <= 4
    assert_weights_close(local[0], apply_pool_change(start, h, payload["a"].double()))
    assert max_change(local[0], start) > 100 * WEIGHT_ATOL
    assert_weights_close(h.weights(), start, atol=0)  # and the working model is back to the global weights


# ---- catch-up ------------------------------------------------------------------------------------------


def test_returning_client_replays_pool_change_and_catch_up_is_counted():
    h = Harness(sizes=(2, 2, 2), K=32)
    cohorts = {1: [0, 1], 2: [1, 2], 3: [1], 4: [0, 2]}
    follower = h.weights()  # a client that receives and applies every round's broadcast
    pools = {0: torch.zeros(32, dtype=torch.float64)}
    after: dict[int, list[torch.Tensor]] = {0: h.weights()}
    for r, cohort in cohorts.items():
        # At the start of round r the global model is the one after round r-1.
        assert_weights_close(h.weights(), follower)
        _, b = h.round(r, cohort)
        follower = apply_pool_change(follower, h, b["delta"].double())
        pools[r] = pools[r - 1] + b["delta"].double()
        after[r] = h.weights()
        assert_weights_close(after[r], follower)

    # Client 0 synced after round 1, missed rounds 2 and 3: one replay of A_3 - A_1 from its old weights.
    returned = apply_pool_change(after[1], h, pools[3] - pools[1])
    assert_weights_close(returned, after[3])
    assert max_change(after[1], after[3]) > 100 * WEIGHT_ATOL

    # Counted: client 2 in round 2 (new: A_1 from w0), client 0 in round 4 (A_3 - A_1), client 2 in
    # round 4 (A_3 - A_2); client 1 never missed a round.
    expected = [pools[1] - pools[0], pools[3] - pools[1], pools[3] - pools[2]]
    d = h.method.describe()
    assert d["catch_up_clients"] == 3
    assert d["catch_up_bits_down"] == 3 * 32 * 32
    assert d["catch_up_regenerations"] == sum(int(torch.count_nonzero(c)) for c in expected)
    assert d["catch_up_regenerations"] > 0


# ---- server update: incremental == rebuild -----------------------------------------------------------


@pytest.mark.parametrize("whole_model", [False, True], ids=["frozen-embedding", "whole-model"])
def test_incremental_and_rebuild_give_the_same_weights(whole_model):
    inc = Harness(server_update="incremental", whole_model=whole_model)
    reb = Harness(server_update="rebuild", whole_model=whole_model)
    start = inc.weights()
    for r in (1, 2, 3):
        _, b_inc = inc.round(r)
        _, b_reb = reb.round(r)
        # g = (l+ - l-) / 2 eps turns the fp32 rounding of the losses (~1e-7) into ~1e-4 differences of g
        # between the two runs, whose weights differ by rounding; lr * 1e-4 * |z| stays below WEIGHT_ATOL.
        torch.testing.assert_close(b_inc["delta"], b_reb["delta"], rtol=1e-3, atol=1e-3)
        assert_weights_close(inc.weights(), reb.weights())
    assert max_change(inc.weights(), start) > 100 * WEIGHT_ATOL
    assert inc.method.w0 is None  # incremental keeps no copy of w0
    # Rebuild regenerates every seed the pool has touched, every round: more work for the same weights.
    assert reb.method.describe()["server_regenerations"] > inc.method.describe()["server_regenerations"]


def test_lean_and_fast_modes_send_the_same_numbers():
    lean, fast = Harness(mode="lean"), Harness(mode="fast")
    for r in (1, 2):
        p_lean, b_lean = lean.round(r)
        p_fast, b_fast = fast.round(r)
        for a, b in zip(p_lean, p_fast, strict=True):
            assert torch.equal(a["a"], b["a"])
        assert torch.equal(b_lean["delta"], b_fast["delta"])
    for a, b in zip(lean.params, fast.params, strict=True):
        assert torch.equal(a, b)


def test_candidate_seeds_are_shared_derived_and_32_bit():
    a, b, pro = Harness(), Harness(), Harness("fedkseed-pro")
    assert a.method.candidates == b.method.candidates == pro.method.candidates
    assert a.method.candidates == [seed32(SEED, "fedkseed", "candidate", j) for j in range(64)]
    assert all(0 <= s < 2**32 for s in a.method.candidates)
    assert len(set(a.method.candidates)) == 64
    # Draws differ between clients and rounds, and are reproducible.
    assert torch.equal(a.method.seed_draws(1, 0), b.method.seed_draws(1, 0))
    assert not torch.equal(a.method.seed_draws(1, 0), a.method.seed_draws(1, 1))
    assert not torch.equal(a.method.seed_draws(1, 0), a.method.seed_draws(2, 0))


# ---- FedKSeed-Pro -------------------------------------------------------------------------------------


def hand_probabilities(scores: list[float]) -> list[float]:
    lo, hi = min(scores), max(scores)
    norm = [(s - lo) / (hi - lo + 1e-10) for s in scores]
    e = [math.exp(x) for x in norm]
    return [x / sum(e) for x in e]


def test_seed_probabilities_are_softmax_of_minmax_scores():
    scores = [0.5, 2.0, 1.0, 2.0, 0.0]
    got = seed_probabilities(torch.tensor(scores))
    # By hand: minmax -> [0.25, 1, 0.5, 1, 0]; softmax of that.
    assert hand_probabilities(scores)[1] == pytest.approx(
        math.e / (math.exp(0.25) + 2 * math.e + math.exp(0.5) + 1)
    )
    torch.testing.assert_close(got, torch.tensor(hand_probabilities(scores), dtype=torch.float64))
    torch.testing.assert_close(
        seed_probabilities(torch.full((7,), 3.0)), torch.full((7,), 1 / 7, dtype=torch.float64)
    )


def test_pro_round_sum_scores_come_from_the_broadcasts_alone():
    """round-sums: score_j = mean over (initial entry, rounds with dA_r[j] != 0) of n_r |dA_r[j]|: a client
    that kept only the broadcasts computes the server's probabilities exactly."""
    h = Harness("fedkseed-pro", sizes=(1, 1), K=8, weighting="uniform")
    assert h.method.describe()["probabilities_from_broadcasts"] is True
    torch.testing.assert_close(h.method.probabilities, torch.full((8,), 1 / 8, dtype=torch.float64))
    rounds = [
        [[4.0, 0, 2, 0, 0, 0, 0, 1], [4.0, 0, 2, 0, 0, 0, 0, 0]],  # dA = [4, 0, 2, 0, 0, 0, 0, .5]
        [[-2.0, 0, 0, 0, 3, 0, 0, 0], [-2.0, 0, 0, 0, -3, 0, 0, 0]],  # dA = [-2, 0, 0, ...]: seed 4 cancels
    ]
    hand = [[8.0, 0, 4, 0, 0, 0, 0, 1], [4.0, 0, 0, 0, 0, 0, 0, 0]]  # n * |dA| per round
    sums, counts = [0.0] * 8, [1] * 8
    for r, (uploads, n_abs) in enumerate(zip(rounds, hand, strict=True), start=1):
        for k in range(2):  # the server pairs payloads with the round's clients; their own a is replaced
            h.method.client_update(r, h.client(k, r))
        payloads = [{"a": torch.tensor(a, dtype=torch.float32)} for a in uploads]
        broadcast = h.method.aggregate(r, payloads)
        # The client side: only n and the broadcast dA.
        from_broadcast = (2 * broadcast["delta"].double().abs()).tolist()
        assert from_broadcast == pytest.approx(n_abs)
        for j, v in enumerate(from_broadcast):
            if v != 0:
                sums[j] += v
                counts[j] += 1
        scores = [s / c for s, c in zip(sums, counts, strict=True)]
        torch.testing.assert_close(h.method.scores(), torch.tensor(scores, dtype=torch.float64))
        torch.testing.assert_close(
            h.method.probabilities, torch.tensor(hand_probabilities(scores), dtype=torch.float64)
        )
    assert scores == pytest.approx([4.0, 0, 2, 0, 0, 0, 0, 0.5])


def test_pro_step_history_scores_are_mean_abs_projected_gradient():
    """step-history (the official code): score_j = mean of |g| over every local step that drew seed j,
    plus the initial entry. The linear loss c_k * sum(w_norm) makes every g = c_k * sum(z_norm) known."""
    h = Harness("fedkseed-pro", sizes=(1, 1), loss="linear", K=8, local_steps=10, pro_scores="step-history")
    assert h.method.describe()["probabilities_from_broadcasts"] is False
    entries: list[list[float]] = [[0.0] for _ in range(8)]
    for r in (1, 2):
        draws = {k: h.method.seed_draws(r, k).tolist() for k in (0, 1)}
        h.round(r)
        for k, js in draws.items():
            for j in js:
                entries[j].append(abs((k + 1) * float(h.z(j)[h.t_idx].double().sum())))
        scores = [sum(e) / len(e) for e in entries]
        torch.testing.assert_close(
            h.method.scores(), torch.tensor(scores, dtype=torch.float64), rtol=1e-3, atol=1e-3
        )
        torch.testing.assert_close(
            h.method.probabilities,
            torch.tensor(hand_probabilities(scores), dtype=torch.float64),
            rtol=1e-3,
            atol=1e-4,
        )
    assert len({round(s, 3) for s in scores}) > 3  # the scores really differ between seeds


def test_pro_draws_seeds_with_larger_scores_more_often():
    h = Harness("fedkseed-pro", sizes=(1, 1), K=8, local_steps=500)
    h.method.score_sum = torch.tensor([0.0, 0, 0, 0, 1, 1, 1, 1], dtype=torch.float64)
    h.method.probabilities = seed_probabilities(h.method.scores())
    counts = torch.zeros(8)
    for r, k in itertools.product(range(1, 9), range(5)):
        counts += torch.bincount(h.method.seed_draws(r, k), minlength=8)
    low, high = counts[:4], counts[4:]
    assert float(high.min()) > float(low.max())
    # minmax scores are 0 and 1: softmax makes a high seed e times as likely as a low one.
    assert 2.4 < float(high.sum() / low.sum()) < 3.1
    # Plain FedKSeed draws uniformly.
    plain = Harness(sizes=(1, 1), K=8, local_steps=500)
    counts = sum(torch.bincount(plain.method.seed_draws(r, 0), minlength=8) for r in range(1, 9))
    assert float(counts.max() / counts.min()) < 1.3


# ---- bits and parameters ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["fedkseed", "fedkseed-pro"])
def test_bits_are_k_fp32_up_and_down(name):
    h = Harness(name, K=16)
    for r in (1, 2):
        payloads = [h.method.client_update(r, h.client(k, r)) for k in range(3)]
        for p in payloads:
            assert list(p) == ["a"] and p["a"].dtype == torch.float32 and p["a"].shape == (16,)
            assert transmit(p)[1] == 16 * 32
        broadcast = h.method.aggregate(r, [transmit(p)[0] for p in payloads])
        assert list(broadcast) == ["delta"] and broadcast["delta"].dtype == torch.float32
        assert transmit(broadcast)[1] == 16 * 32
    assert h.method.describe()["catch_up_clients"] == 0  # the same three clients every round


def test_client_update_leaves_the_model_exactly_as_found():
    h = Harness(K=16)
    before = h.weights()
    h.method.client_update(1, h.client(0, 1))
    assert_weights_close(h.weights(), before, atol=0)
    assert ZO_RESTORE_ATOL > 0  # the restore is a copy, stricter than the ZO restore tolerance


def test_params_defaults_and_validation():
    p = FedKSeedParams()
    assert (p.K, p.local_steps, p.weighting, p.server_update) == (4096, 200, "examples", "incremental")
    pro = FedKSeedProParams()
    assert (pro.pro_scores, pro.score_clip, pro.score_initial) == ("round-sums", 1000.0, 0.0)
    for bad in ({"lr": 0.0}, {"K": 0}, {"local_steps": 0}, {"server_update": "replay"}, {"weighting": "x"}):
        with pytest.raises(ConfigError):
            FedKSeedParams(**bad)
    with pytest.raises(ConfigError):
        FedKSeedProParams(pro_scores="oracle")
    assert METHODS.get("fedkseed") is FedKSeed and METHODS.get("fedkseed-pro") is FedKSeedPro
