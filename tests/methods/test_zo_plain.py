"""The optimised ZO step against the plain one: same seeds, same z, same weights.

The plain step is written here as the MeZO pattern states it: one generator per pass seeded with the
step seed, ``torch.randn`` per parameter, four passes (+eps, -2 eps, +eps, -lr g). zofo draws z in
cache-sized chunks, reuses buffers and (with ``fuse``) folds the restore into the update; none of that
may change a number, except the rounding of the fused pass, which stays within the restore tolerance.
"""

from __future__ import annotations

import pytest
import torch
from conftest import ZO_RESTORE_ATOL, load_tiny_llama

from zofo.core.zo import CHUNK, SeededDirections, chunk_bounds, trainable_parameters

EPS = 1e-3
LR = 1e-2  # lr * g * |z| well above the restore tolerance: a wrong update shows
SEEDS = [101, 7, 2**31 + 5]

# Lengths around every boundary the chunked draw has: under 16 (torch samples one value at a time),
# exactly 16, a ragged tail, the chunk size and one or fifteen past it (the tail joins the chunk before).
EDGE_SHAPES = [
    (3,),
    (2, 5),
    (16,),
    (17,),
    (31, 3),
    (CHUNK - 1,),
    (CHUNK,),
    (CHUNK + 1,),
    (CHUNK + 15,),
    (CHUNK + 16,),
    (2, CHUNK + 7),
    (301, 457),
]


def plain_z(params: list[torch.Tensor], seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params]


@torch.no_grad()
def plain_step(params: list[torch.Tensor], seed: int, loss, g: float | None = None) -> float:
    """One plain step; ``g`` given: the step is taken with it instead of the one measured."""

    def shift(alpha: float) -> None:
        for p, z in zip(params, plain_z(params, seed), strict=True):
            p.add_(z, alpha=alpha)

    shift(EPS)
    l_plus = float(loss())
    shift(-2 * EPS)
    l_minus = float(loss())
    shift(EPS)
    if g is None:
        g = (l_plus - l_minus) / (2 * EPS)
    shift(-LR * g)
    return g


def tiny_loss(model: torch.nn.Module):
    ids = torch.tensor([[101, 2023, 2003, 1037, 3231, 102], [5, 17, 2003, 44, 9, 102]])
    return lambda: float(model(input_ids=ids, labels=ids).loss)


def run_zofo(mode: str, fuse: bool) -> tuple[list[float], list[torch.Tensor]]:
    model = load_tiny_llama().model.eval()
    dirs = SeededDirections(trainable_parameters(model), EPS, mode, fuse=fuse)
    loss = tiny_loss(model)
    grads = []
    with torch.no_grad():
        for seed in SEEDS:
            g = dirs.estimate(seed, loss, hold=True)
            dirs.update(seed, LR * g)
            grads.append(g)
    assert not dirs.holding
    return grads, [p.detach().clone() for p in trainable_parameters(model)]


def run_plain(forced: list[float] | None = None) -> tuple[list[float], list[torch.Tensor]]:
    model = load_tiny_llama().model.eval()
    params = trainable_parameters(model)
    loss = tiny_loss(model)
    forced = forced or [None] * len(SEEDS)
    grads = [plain_step(params, seed, loss, g) for seed, g in zip(SEEDS, forced, strict=True)]
    return grads, [p.detach().clone() for p in params]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_chunked_z_is_bitwise_the_plain_draw(dtype):
    params = [torch.zeros(s, dtype=dtype) for s in EDGE_SHAPES]
    for mode in ("lean", "fast"):
        got = list(SeededDirections(params, EPS, mode).z(12345))
        for a, b, shape in zip(got, plain_z(params, 12345), EDGE_SHAPES, strict=True):
            assert a.dtype == dtype and a.shape == b.shape
            assert torch.equal(a, b), f"z differs for a parameter of shape {shape} ({mode}, {dtype})"


@pytest.mark.parametrize("mode", ["lean", "fast"])
def test_axpy_on_edge_shapes_is_bitwise_the_plain_arithmetic(mode):
    g = torch.Generator().manual_seed(0)
    start = [torch.randn(s, generator=g) for s in EDGE_SHAPES]
    ours = [w.clone() for w in start]
    SeededDirections(ours, EPS, mode).axpy(99, -0.37)
    for w, o, z in zip(start, ours, plain_z(start, 99), strict=True):
        assert torch.equal(o, w.add(z, alpha=-0.37))


def test_chunk_bounds_cover_the_parameter_with_aligned_chunks():
    for n in [1, 15, 16, 17, CHUNK - 1, CHUNK, CHUNK + 1, CHUNK + 15, CHUNK + 16, 3 * CHUNK + 40]:
        bounds = chunk_bounds(n)
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False)), "gaps or overlaps"
        assert all((b - a) % 16 == 0 for a, b in bounds[:-1]), "an inner chunk breaks a block of 16"
        assert n < 16 or bounds[-1][1] - bounds[-1][0] >= 16, "a last chunk under 16 samples differently"
    with pytest.raises(ValueError, match="chunk"):
        chunk_bounds(100, chunk=24)


@pytest.mark.parametrize("mode", ["lean", "fast"])
def test_separate_passes_give_the_plain_step_bit_for_bit(mode):
    plain_g, plain_w = run_plain()
    grads, weights = run_zofo(mode, fuse=False)
    assert grads == plain_g
    for a, b in zip(weights, plain_w, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("mode", ["lean", "fast"])
def test_fused_passes_give_the_plain_step_to_rounding(mode):
    plain_g, _ = run_plain()
    grads, weights = run_zofo(mode, fuse=True)
    # The first estimate sees the very same weights; after that only the rounding of the restore
    # differs (a few ulp of |w| <= ~1 in fp32), which moves the next fp32 losses (~10, ulp ~1e-6) by
    # a few ulp and the projected gradient by a few ulp / (2 eps).
    assert grads[0] == plain_g[0]
    assert grads == pytest.approx(plain_g, rel=0, abs=4 * 2**-20 / (2 * EPS))
    # Weights: the plain step replayed with zofo's gradients lands within the restore tolerance per step.
    _, replayed = run_plain(forced=grads)
    start = [p.detach() for p in trainable_parameters(load_tiny_llama().model)]
    moved = max(float((w - w0).abs().max()) for w, w0 in zip(replayed, start, strict=True))
    assert moved > 100 * ZO_RESTORE_ATOL, "the steps should move the weights far beyond the tolerance"
    for a, b in zip(weights, replayed, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=len(SEEDS) * ZO_RESTORE_ATOL)


def test_lean_and_fast_agree_bitwise_when_fused():
    _, lean = run_zofo("lean", fuse=True)
    _, fast = run_zofo("fast", fuse=True)
    for a, b in zip(lean, fast, strict=True):
        assert torch.equal(a, b)


def test_fused_lean_step_regenerates_z_three_times():
    model = load_tiny_llama().model.eval()
    loss = tiny_loss(model)
    counts = {}
    for fuse in (False, True):
        dirs = SeededDirections(trainable_parameters(model), EPS, "lean", fuse=fuse)
        with torch.no_grad():
            g = dirs.estimate(3, loss, hold=True)
            dirs.update(3, LR * g)
        counts[fuse] = dirs.regenerations
    assert counts == {False: 4, True: 3}


@pytest.mark.parametrize("mode", ["lean", "fast"])
def test_a_pass_on_another_seed_settles_a_held_perturbation_first(mode):
    g = torch.Generator().manual_seed(1)
    start = [torch.randn(s, generator=g) for s in [(40, 30), (70,)]]
    ours = [w.clone() for w in start]
    dirs = SeededDirections(ours, EPS, mode, cache_size=2)
    dirs.estimate(5, lambda: 0.0, hold=True)
    assert dirs.holding
    dirs.update(6, 0.25)  # another seed: the held -eps z(5) must be undone, not folded into z(6)
    assert not dirs.holding
    for w, o, z6 in zip(start, ours, plain_z(start, 6), strict=True):
        torch.testing.assert_close(o, w - 0.25 * z6, rtol=0, atol=ZO_RESTORE_ATOL)


def test_held_perturbation_absorbed_by_the_next_estimate_on_the_same_seed():
    # FeedSign's clients: the second estimate starts from -eps z and must still see +eps z and -eps z.
    g = torch.Generator().manual_seed(2)
    w0 = torch.randn(64, 48, generator=g)
    w = w0.clone()
    seen: list[torch.Tensor] = []
    dirs = SeededDirections([w], EPS, "lean")
    for _ in range(3):
        dirs.estimate(9, lambda: seen.append(w - w0) or 0.0, hold=True)
    dirs.settle()
    (z,) = plain_z([w0], 9)
    for i, d in enumerate(seen):
        torch.testing.assert_close(d, (EPS if i % 2 == 0 else -EPS) * z, rtol=0, atol=ZO_RESTORE_ATOL)
    torch.testing.assert_close(w, w0, rtol=0, atol=ZO_RESTORE_ATOL)
