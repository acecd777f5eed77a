"""FeedSign: each step moves the weights by exactly +-lr * z(s_t), with s_t shared by every client of the
step, a 1-bit sign up per client and a 1-bit majority vote down.

The loss is an oracle of our own: c_k * sum(w_norm) for client k, linear in the final RMSNorm weight, so
client k's projected gradient along z is c_k * sum(z_norm) and its sign is known in advance from the
independently regenerated z (a plain torch.Generator seeded with the step seed).
"""

from __future__ import annotations

import itertools

import pytest
import torch
from conftest import ZO_RESTORE_ATOL, load_tiny_llama, max_abs_diff, oracle_z, snapshot

from zofo.core.config import ZOConfig
from zofo.core.zo import trainable_parameters
from zofo.engine.comm import payload_bits, transmit
from zofo.methods.base import ClientData, RunContext
from zofo.methods.feedsign import FeedSign, FeedSignParams, majority_vote

SEED = 17
EPS = 1e-3
LR = 1e-2  # lr * |z| ~ 1e-2: far above the restore tolerance, so a wrong or missing step shows


class Harness:
    """A FeedSign method on tiny-llama driven by a controllable linear loss."""

    def __init__(
        self,
        coeffs: list[float],
        mode: str = "lean",
        tie: str = "positive",
        lr: float = LR,
        whole_model: bool = False,
        fuse: bool = True,
    ):
        self.fuse = fuse
        self.model = load_tiny_llama().model
        if not whole_model:
            # The (tied) 977k-entry embedding is 98% of the model: freezing it keeps these tests fast and
            # also checks that FeedSign perturbs the trainable parameters only.
            self.model.get_input_embeddings().weight.requires_grad_(False)
        self.params = trainable_parameters(self.model)
        self.target = self.model.model.norm.weight
        self.t_idx = next(i for i, p in enumerate(self.params) if p is self.target)
        self.coeffs = coeffs
        self.seen: list[torch.Tensor] = []  # the target's displacement at every loss call, in units of eps
        self._origin: torch.Tensor | None = None

        def loss(batch):
            if self._origin is not None:
                self.seen.append((self.target.detach() - self._origin) / EPS)
            return batch["c"] * self.target.double().sum()

        ctx = RunContext(
            model=self.model,
            loss=loss,
            zo=ZOConfig(eps=EPS, mode=mode, fuse=fuse),
            seed=SEED,
            num_clients=len(coeffs),
            cohort_size=len(coeffs),
        )
        self.method = FeedSign(FeedSignParams(lr=lr, tie=tie), ctx)
        self.method.setup()

    def client(self, k: int) -> ClientData:
        batch = {"c": torch.tensor(self.coeffs[k], dtype=torch.float64)}
        return ClientData(client_id=k, num_examples=10, batches=itertools.repeat(batch))

    def round(self, r: int) -> tuple[list[dict], dict]:
        payloads = []
        global_w = [p.detach().clone() for p in self.params]
        z = oracle_z(self.params, self.method.step_seed(r))
        # Between clients the model is where the engine may leave it: at the global weights, or (fused)
        # held at -eps z(s_t) along the shared direction until the next client or the server moves on.
        held = -EPS if self.fuse else 0.0
        self._origin = self.target.detach().clone()
        for k in range(len(self.coeffs)):
            payloads.append(self.method.client_update(r, self.client(k)))
            for p, w, zi in zip(self.params, global_w, z, strict=True):
                torch.testing.assert_close(p.detach(), w + held * zi, rtol=0, atol=ZO_RESTORE_ATOL)
        self._origin = None
        received = [transmit(p)[0] for p in payloads]
        broadcast = self.method.aggregate(r, received)
        self.method.end_round(r)
        return payloads, broadcast


def expected_signs(coeffs: list[float], z_target: torch.Tensor) -> list[int]:
    s = float(z_target.double().sum())
    assert abs(s) > 0.1, "degenerate oracle direction: pick another seed"
    return [1 if c * s > 0 else -1 for c in coeffs]


@pytest.mark.parametrize(
    ("coeffs", "mode", "whole_model", "fuse"),
    [
        pytest.param([1.0, 1.0, 1.0], "lean", False, True, id="3-agree-lean"),
        pytest.param([1.0, 1.0, 1.0], "fast", False, True, id="3-agree-fast"),
        pytest.param([1.0, 1.0, 1.0], "lean", False, False, id="3-agree-lean-separate-passes"),
        pytest.param([1.0, -1.0, 1.0, -1.0, 1.0], "lean", False, True, id="5-split-lean"),
        pytest.param([1.0, -1.0, 1.0, -1.0, 1.0], "fast", True, True, id="5-split-fast-whole-model"),
        pytest.param([1.0, -1.0, 1.0, -1.0, 1.0], "fast", False, False, id="5-split-fast-separate-passes"),
    ],
)
def test_step_moves_weights_by_exactly_lr_vote_z(coeffs, mode, whole_model, fuse):
    h = Harness(coeffs, mode=mode, whole_model=whole_model, fuse=fuse)
    frozen = {id(p): p.detach().clone() for p in h.model.parameters() if not p.requires_grad}
    votes = []
    for r in (1, 2, 3, 4):
        s_t = h.method.step_seed(r)
        z = oracle_z(h.params, s_t)
        before = [p.detach().clone() for p in h.params]
        h.seen.clear()
        payloads, broadcast = h.round(r)

        # Every client perturbed along the same z(s_t): +eps z, then -eps z (two loss calls each).
        assert len(h.seen) == 2 * len(coeffs)
        for i, d in enumerate(h.seen):
            sign = 1.0 if i % 2 == 0 else -1.0
            torch.testing.assert_close(d, sign * z[h.t_idx], rtol=0, atol=1e-3)

        signs = expected_signs(coeffs, z[h.t_idx])
        assert [1 if bool(p["sign"].item()) else -1 for p in payloads] == signs
        v = 1 if sum(signs) > 0 else -1
        votes.append(v)
        assert bool(broadcast["vote"].item()) == (v > 0)

        for p, b, zi in zip(h.params, before, z, strict=True):
            torch.testing.assert_close(p.detach(), b - LR * v * zi, rtol=0, atol=ZO_RESTORE_ATOL)
    assert set(votes) == {-1, 1}, "the chosen seeds should exercise both vote signs"
    assert len(frozen) == (0 if whole_model else 1)
    for p in h.model.parameters():
        if id(p) in frozen:
            assert torch.equal(p.detach(), frozen[id(p)]), "a frozen parameter was perturbed"


def test_step_seed_is_shared_by_clients_and_changes_per_step():
    h = Harness([1.0, 1.0])
    seeds = [h.method.step_seed(r) for r in range(1, 6)]
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= s < 2**32 for s in seeds), "a step seed must fit the 32-bit wire budget"
    again = Harness([1.0, 1.0])
    assert [again.method.step_seed(r) for r in range(1, 6)] == seeds


@pytest.mark.parametrize("minority", [-1.0, -1000.0], ids=["reversed", "reversed-x1000"])
def test_reversed_sign_minority_does_not_change_the_vote(minority):
    """Two of five clients report the opposite direction (with any magnitude): the weights end bitwise
    identical to the run where all five agree, because only signs are sent and the majority wins."""
    honest = Harness([1.0] * 5)
    attacked = Harness([1.0, minority, 1.0, minority, 1.0])
    for r in (1, 2, 3):
        _, b_honest = honest.round(r)
        payloads, b_attacked = attacked.round(r)
        assert [bool(p["sign"].item()) for p in payloads].count(bool(b_attacked["vote"].item())) == 3
        assert torch.equal(b_honest["vote"], b_attacked["vote"])
    for a, b in zip(honest.params, attacked.params, strict=True):
        assert torch.equal(a, b)


def test_majority_vote_and_tie_break():
    assert majority_vote([1, 1, -1], tie_break=-1) == 1
    assert majority_vote([-1, -1, 1], tie_break=1) == -1
    assert majority_vote([1, -1], tie_break=1) == 1
    assert majority_vote([1, -1], tie_break=-1) == -1
    assert majority_vote([1, -1, -1, 1], tie_break=-1) == -1
    assert majority_vote([1], tie_break=-1) == 1


def test_tied_vote_with_positive_rule_steps_along_minus_lr_z():
    h = Harness([1.0, -1.0], tie="positive")
    s_t = h.method.step_seed(1)
    z = oracle_z(h.params, s_t)
    before = [p.detach().clone() for p in h.params]
    payloads, broadcast = h.round(1)
    assert sorted(bool(p["sign"].item()) for p in payloads) == [False, True]  # a genuine tie
    assert bool(broadcast["vote"].item()) is True
    for p, b, zi in zip(h.params, before, z, strict=True):
        torch.testing.assert_close(p.detach(), b - LR * zi, rtol=0, atol=ZO_RESTORE_ATOL)


def test_random_tie_break_is_seeded_and_takes_both_values():
    """A tie under the "random" rule is broken by a coin derived from (run seed, t): the same for every
    party that knows the seed, and not a constant."""
    tie = [{"sign": torch.tensor([True])}, {"sign": torch.tensor([False])}]
    a = Harness([1.0, -1.0], tie="random", lr=1e-6)
    b = Harness([1.0, -1.0], tie="random", lr=1e-6)
    votes_a = [bool(a.method.aggregate(r, tie)["vote"].item()) for r in range(1, 13)]
    votes_b = [bool(b.method.aggregate(r, tie)["vote"].item()) for r in range(1, 13)]
    assert votes_a == votes_b
    assert set(votes_a) == {True, False}
    for x, y in zip(a.params, b.params, strict=True):
        assert torch.equal(x, y)


def test_payloads_are_exactly_one_bit_each_way():
    h = Harness([1.0, -1.0, 1.0])
    payloads, broadcast = h.round(1)
    for p in payloads:
        assert payload_bits(p) == 1
        assert transmit(p)[1] == 1
        assert p["sign"].dtype == torch.bool and p["sign"].numel() == 1
    assert payload_bits(broadcast) == 1
    assert transmit(broadcast)[1] == 1


def test_zero_estimate_is_sent_as_minus_one():
    """Documented (describe()["zero_estimate_sign"] == -1): a loss blind to the perturbation sends False."""
    h = Harness([0.0])
    payloads, _ = h.round(1)
    assert bool(payloads[0]["sign"].item()) is False
    assert h.method.describe()["zero_estimate_sign"] == -1


def test_aggregate_ignores_anything_but_the_sign_bit():
    """The server acts on decoded payloads only: a client's estimate magnitude never reaches it."""
    h1 = Harness([1.0, 1.0, 1.0])
    h2 = Harness([1e6, 1e-6, 3.0])
    start = snapshot(h1.model)
    for r in (1, 2):
        h1.round(r)
        h2.round(r)
    for a, b in zip(h1.params, h2.params, strict=True):
        assert torch.equal(a, b)
    assert max_abs_diff(h1.model, start) > 1e-3  # the steps did happen


@pytest.mark.parametrize("mode", ["lean", "fast"])
def test_round_without_valid_signs_leaves_the_global_weights(mode):
    # Every sign rejected: the server never aggregates, and end_round must undo the perturbation the
    # clients left held along the shared direction, or the next evaluation would see w - eps z.
    h = Harness([1.0, -1.0, 1.0], mode=mode)
    global_w = snapshot(h.model)
    for k in range(3):
        h.method.client_update(1, h.client(k))
    assert max_abs_diff(h.model, global_w) > 10 * ZO_RESTORE_ATOL, "fusing should hold the perturbation"
    h.method.end_round(1)
    assert max_abs_diff(h.model, global_w) <= ZO_RESTORE_ATOL


def test_formulas_are_one_bit_each_way_and_a_64th_of_zo_fedsgds_uplink():
    """The paper's count, by hand: FeedSign 1 bit up and 1 down; its baseline ZO-FedSGD a uint32 seed and
    an fp32 scalar up (64 bits) and all n pairs down, whatever the model's size."""
    from zofo.methods.zo_fedsgd import ZOFedSGD, ZOFedSGDParams

    h = Harness([1.0, -1.0, 1.0])
    base = ZOFedSGD(ZOFedSGDParams(), h.method.ctx)
    base.setup()
    for d, n in [(10, 1), (10**6, 5), (10**9, 200)]:
        assert h.method.formula_bits(d, n) == (1, 1)
        assert base.formula_bits(d, n) == (64, 64 * n)
        assert 64 * h.method.formula_bits(d, n)[0] == base.formula_bits(d, n)[0]
