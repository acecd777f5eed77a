"""The seeded ZO step (zofo.core.zo): restore, determinism, lean == fast, tied weights, no global RNG."""

from __future__ import annotations

import pytest
import torch
from conftest import ZO_RESTORE_ATOL, load_tiny_llama, max_abs_diff, oracle_z, snapshot, unique_trainable

from zofo.core.zo import SeededDirections, trainable_parameters

EPS = 1e-3
MODES = ["lean", "fast"]


def tiny_loss(model: torch.nn.Module):
    """A real forward pass of the tiny Llama (eval mode: no dropout), as a ZO loss closure."""
    ids = torch.tensor([[101, 2023, 2003, 1037, 3231, 102]])

    def loss() -> float:
        logits = model(input_ids=ids).logits
        return float(torch.nn.functional.cross_entropy(logits[0, :-1], ids[0, 1:]))

    return loss


@pytest.mark.parametrize("mode", MODES)
def test_perturb_plus1_minus2_plus1_restores(tiny_llama, mode):
    """perturb(+1), perturb(-2), perturb(+1) restores the weights: fp32, |w| <= ~1, eps 1e-3 -> atol 1e-6.

    A perturbation that is not undone moves weights by eps * |z| ~ 1e-3, far above the tolerance."""
    model = tiny_llama.model
    assert max(float(p.detach().abs().max()) for p in model.parameters()) <= 1.0 + 1e-6  # the stated regime
    before = snapshot(model)
    dirs = SeededDirections(trainable_parameters(model), EPS, mode)
    dirs.perturb(1234, +1.0)
    assert max_abs_diff(model, before) > 100 * ZO_RESTORE_ATOL  # the perturbation really moved weights
    dirs.perturb(1234, -2.0)
    dirs.perturb(1234, +1.0)
    assert max_abs_diff(model, before) <= ZO_RESTORE_ATOL


@pytest.mark.parametrize("mode", MODES)
def test_estimate_restores_weights(tiny_llama, mode):
    """estimate() leaves the weights as it found them: fp32, |w| <= ~1, eps 1e-3 -> atol 1e-6."""
    model = tiny_llama.model.eval()
    before = snapshot(model)
    dirs = SeededDirections(trainable_parameters(model), EPS, mode)
    with torch.no_grad():
        g = dirs.estimate(99, tiny_loss(model))
    assert torch.isfinite(torch.tensor(g)) and g != 0.0
    assert max_abs_diff(model, before) <= ZO_RESTORE_ATOL


def test_estimate_is_the_two_point_difference(tiny_llama):
    """estimate(s, f) = (f(w + eps z) - f(w - eps z)) / (2 eps), evaluated here by hand with the oracle z."""
    model = tiny_llama.model.eval()
    params = trainable_parameters(model)
    loss = tiny_loss(model)
    z = oracle_z(params, 99)
    with torch.no_grad():
        base = [p.clone() for p in params]
        for p, b, zi in zip(params, base, z, strict=True):
            p.copy_(b + EPS * zi)
        l_plus = loss()
        for p, b, zi in zip(params, base, z, strict=True):
            p.copy_(b - EPS * zi)
        l_minus = loss()
        for p, b in zip(params, base, strict=True):
            p.copy_(b)
        expected = (l_plus - l_minus) / (2 * EPS)
        got = SeededDirections(params, EPS, "lean").estimate(99, loss)
    # fp32 losses ~10 carry ~1e-6 rounding, i.e. ~1e-3 noise in the quotient: compare where |g| >> that.
    assert abs(expected) > 1.0
    assert got == pytest.approx(expected, rel=1e-2)


def test_same_seed_same_z_on_two_models_and_equals_oracle():
    """z(seed) depends only on the seed and the parameter list: two separately built models agree, and
    both equal a plain torch.Generator(seed) + randn per parameter in model.parameters() order."""
    m1 = load_tiny_llama(seed=0).model
    m2 = load_tiny_llama(seed=1).model  # different weights, same shapes
    d1 = SeededDirections(trainable_parameters(m1), EPS, "lean")
    d2 = SeededDirections(trainable_parameters(m2), EPS, "fast")
    z1, z2 = list(d1.z(42)), list(d2.z(42))
    oracle = oracle_z(list(m1.parameters()), 42)
    assert len(z1) == len(oracle) == len(list(m1.parameters()))
    for a, b, o in zip(z1, z2, oracle, strict=True):
        assert torch.equal(a, b)
        assert torch.equal(a, o)


def test_axpy_applies_exactly_the_oracle_z(tiny_llama):
    """Black-box: on zeroed weights, w += 1 * z(s) leaves exactly the oracle's z in the weights."""
    model = tiny_llama.model
    params = trainable_parameters(model)
    with torch.no_grad():
        for p in params:
            p.zero_()
    SeededDirections(params, EPS, "lean").axpy(2024, 1.0)
    for p, o in zip(params, oracle_z(params, 2024), strict=True):
        assert torch.equal(p.detach(), o)


def test_different_seeds_give_different_z(tiny_llama):
    dirs = SeededDirections(trainable_parameters(tiny_llama.model), EPS, "lean")
    za, zb = list(dirs.z(1)), list(dirs.z(2))
    for a, b in zip(za, zb, strict=True):
        assert not torch.equal(a, b)
    assert float(torch.cat([(a - b).reshape(-1) for a, b in zip(za, zb, strict=True)]).abs().mean()) > 0.5


def test_z_does_not_depend_on_the_global_rng(tiny_llama):
    dirs = SeededDirections(trainable_parameters(tiny_llama.model), EPS, "lean")
    torch.manual_seed(0)
    za = list(dirs.z(5))
    torch.manual_seed(12345)
    torch.randn(10)
    zb = list(dirs.z(5))
    assert all(torch.equal(a, b) for a, b in zip(za, zb, strict=True))


def test_lean_and_fast_are_bitwise_identical():
    """The same sequence of perturb/estimate/update calls leaves bitwise-identical weights in both modes."""
    models = {mode: load_tiny_llama().model.eval() for mode in MODES}
    for mode, model in models.items():
        dirs = SeededDirections(trainable_parameters(model), EPS, mode, cache_size=2)
        loss = tiny_loss(model)
        with torch.no_grad():
            for step, seed in enumerate([11, 12, 11, 13]):
                g = dirs.estimate(seed, loss)
                dirs.update(seed, 1e-2 * g)
                dirs.perturb(seed, 0.5 * (step + 1))
                dirs.update(seed + 1, -3e-3)
    for a, b in zip(models["lean"].parameters(), models["fast"].parameters(), strict=True):
        assert torch.equal(a, b)


def test_fast_mode_generates_each_seed_once_per_step(tiny_llama):
    model = tiny_llama.model.eval()
    loss = tiny_loss(model)
    counts = {}
    for mode in MODES:
        dirs = SeededDirections(trainable_parameters(model), EPS, mode)
        with torch.no_grad():
            g = dirs.estimate(3, loss)
            dirs.update(3, 0.0 * g)
        counts[mode] = dirs.regenerations
    assert counts == {"lean": 4, "fast": 1}


def test_tied_embedding_and_head_are_one_parameter_perturbed_once(tiny_llama):
    model = tiny_llama.model
    emb, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    assert emb is head, "tiny-llama is expected to tie its embedding and LM head"
    params = trainable_parameters(model)
    assert len({id(p) for p in params}) == len(params), "a tensor appears twice in trainable_parameters"
    assert len({p.data_ptr() for p in params}) == len(params), "two trainable entries share storage"
    assert [id(p) for p in params] == [id(p) for p in unique_trainable(model)]
    assert sum(p is emb for p in params) == 1

    before = emb.detach().clone()
    SeededDirections(params, EPS, "lean").perturb(77, +1.0)
    assert model.get_input_embeddings().weight is model.get_output_embeddings().weight
    # Perturbed exactly once: w + eps z, not w + 2 eps z (which a duplicated entry would give).
    idx = next(i for i, p in enumerate(params) if p is emb)
    expected = before + EPS * oracle_z(params, 77)[idx]
    assert torch.allclose(emb.detach(), expected, rtol=0, atol=ZO_RESTORE_ATOL)
    assert torch.equal(model.get_input_embeddings().weight, model.get_output_embeddings().weight)


@pytest.mark.parametrize("mode", MODES)
def test_estimate_does_not_touch_the_global_rng(tiny_llama, mode):
    model = tiny_llama.model.eval()
    dirs = SeededDirections(trainable_parameters(model), EPS, mode)
    loss = tiny_loss(model)
    torch.manual_seed(31337)
    state = torch.get_rng_state()
    with torch.no_grad():
        dirs.estimate(8, loss)
        dirs.update(8, 1e-3)
    assert torch.equal(torch.get_rng_state(), state)


def test_bad_mode_is_rejected(tiny_llama):
    with pytest.raises(ValueError, match="zo.mode"):
        SeededDirections(trainable_parameters(tiny_llama.model), EPS, "quick")
