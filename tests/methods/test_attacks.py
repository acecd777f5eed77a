"""Byzantine attacks: exact outputs on tiny tensors, purity, determinism, and who is Byzantine."""

from __future__ import annotations

import math

import pytest
import torch

from zofo.core.errors import ConfigError
from zofo.core.seeds import numpy_rng
from zofo.robust.attacks import ATTACKS, apply_attack, byzantine_clients


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def sample(kind: str, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return {
        "sign": torch.tensor([[True, False, True], [False, False, True]]),
        "scalar": torch.tensor([0.25, -3.0, 0.0, 1.5], dtype=dtype),
        "dense": torch.tensor([[0.1, -0.2], [0.3, 0.0], [-0.5, 0.6]], dtype=dtype),
        "seed": torch.tensor([0, 7, 2**31, 2**32 - 1], dtype=torch.uint32),
    }[kind]


PAIRS = [
    ("reversed", "sign"),
    ("random", "sign"),
    ("constant", "sign"),
    ("random", "scalar"),
    ("scaled-negative", "scalar"),
    ("huge", "scalar"),
    ("sign-flip", "dense"),
    ("gaussian", "dense"),
    ("scaled", "dense"),
    ("wrong-seed", "seed"),
    ("nan", "scalar"),
    ("nan", "dense"),
    ("inf", "scalar"),
    ("inf", "dense"),
]


def test_attack_table():
    assert ATTACKS == {
        "reversed": {"sign"},
        "random": {"sign", "scalar"},
        "constant": {"sign"},
        "scaled-negative": {"scalar"},
        "huge": {"scalar"},
        "sign-flip": {"dense"},
        "gaussian": {"dense"},
        "scaled": {"dense"},
        "wrong-seed": {"seed"},
        "nan": {"scalar", "dense"},
        "inf": {"scalar", "dense"},
    }


@pytest.mark.parametrize(("name", "kind"), PAIRS)
def test_shape_dtype_kept_input_untouched_and_deterministic(name, kind):
    for dtype in (torch.float64, torch.float32):
        value = sample(kind, dtype)
        before = value.clone()
        out = apply_attack(name, kind, value, gen(3), strength=2.0)
        assert out is not value
        assert out.shape == value.shape and out.dtype == value.dtype
        assert torch.equal(value, before), "the attack wrote to its input"
        again = apply_attack(name, kind, value, gen(3), strength=2.0)
        assert torch.equal(out, again) or (out.isnan().all() and again.isnan().all())


@pytest.mark.parametrize(("name", "kind"), PAIRS)
def test_untargeted_kinds_come_back_unchanged(name, kind):
    for other in ("sign", "scalar", "dense", "seed"):
        if other != kind and other not in ATTACKS[name]:
            value = sample(other)
            assert apply_attack(name, other, value, gen(), 5.0) is value


def test_sign_attacks():
    v = torch.tensor([True, False, False, True])
    assert apply_attack("reversed", "sign", v, gen()).tolist() == [False, True, True, False]
    assert apply_attack("constant", "sign", v, gen()).tolist() == [True] * 4
    coins = apply_attack("random", "sign", torch.zeros(4000, dtype=torch.bool), gen(1))
    assert 0.45 < coins.double().mean().item() < 0.55  # fair: 6 standard errors either side
    other = apply_attack("random", "sign", torch.zeros(4000, dtype=torch.bool), gen(2))
    assert not torch.equal(coins, other)


def test_scalar_attacks():
    v = torch.tensor([1.5, -2.0, 0.0], dtype=torch.float64)
    assert apply_attack("scaled-negative", "scalar", v, gen(), strength=3.0).tolist() == [-4.5, 6.0, 0.0]
    assert apply_attack("huge", "scalar", v, gen(), strength=2.0).tolist() == [2e6, -2e6, 2e6]
    # random: N(0, 1) * strength * (1 + max |value|) = N(0, 1) * 0.5 * 3
    expected = torch.randn(3, generator=gen(4), dtype=torch.float64) * 1.5
    assert torch.equal(apply_attack("random", "scalar", v, gen(4), strength=0.5), expected)


def test_dense_attacks():
    v = torch.tensor([3.0, -4.0, 0.0, 0.0], dtype=torch.float64)  # root mean square sqrt(25 / 4) = 2.5
    assert apply_attack("sign-flip", "dense", v, gen()).tolist() == [-3.0, 4.0, 0.0, 0.0]
    assert apply_attack("scaled", "dense", v, gen(), strength=5.0).tolist() == [15.0, -20.0, 0.0, 0.0]
    expected = torch.randn(4, generator=gen(6), dtype=torch.float64) * (2.0 * 2.5)
    assert torch.allclose(apply_attack("gaussian", "dense", v, gen(6), strength=2.0), expected)
    zero = torch.zeros(4, dtype=torch.float64)  # an all-zero update gets sigma = strength
    expected = torch.randn(4, generator=gen(6), dtype=torch.float64) * 2.0
    assert torch.allclose(apply_attack("gaussian", "dense", zero, gen(6), strength=2.0), expected)


def test_gaussian_noise_norm_tracks_the_honest_norm():
    honest = torch.full((10_000,), 0.01, dtype=torch.float64)  # norm 1
    noise = apply_attack("gaussian", "dense", honest, gen(7), strength=3.0)
    assert 2.8 < noise.norm().item() < 3.2


def test_scaled_by_the_client_count_replaces_the_model():
    # Three honest updates averaging 0 and one attacker aiming at 2.0: 4 clients, strength 4.
    honest = torch.tensor([[0.1], [-0.1], [0.0]], dtype=torch.float64)
    evil = apply_attack("scaled", "dense", torch.tensor([2.0], dtype=torch.float64), gen(), strength=4.0)
    assert torch.cat([honest, evil[None]]).mean(dim=0).item() == pytest.approx(2.0)


@pytest.mark.parametrize("kind", ["scalar", "dense"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_nan_and_inf_fill_the_whole_tensor(kind, dtype):
    v = sample(kind, dtype)
    assert apply_attack("nan", kind, v, gen()).isnan().all()
    out = apply_attack("inf", kind, v, gen())
    assert (out == math.inf).all()


def test_wrong_seed_always_differs_from_the_honest_one():
    honest = sample("seed")
    for s in range(200):
        out = apply_attack("wrong-seed", "seed", honest, gen(s))
        assert out.dtype == torch.uint32
        assert (out != honest).all(), (s, out)
    seeds = {int(apply_attack("wrong-seed", "seed", honest[:1], gen(s)).item()) for s in range(50)}
    assert len(seeds) == 50  # 50 draws out of 2^32 - 1 values: a repeat would mean a broken draw
    assert apply_attack("wrong-seed", "seed", honest, gen(1)).tolist() != honest.tolist()


def test_wrong_dtype_for_the_kind_is_refused():
    with pytest.raises(ValueError, match="sign"):
        apply_attack("reversed", "sign", torch.tensor([1.0, 0.0]), gen())
    with pytest.raises(ValueError, match="dense"):
        apply_attack("nan", "dense", torch.tensor([1, 2]), gen())


def test_unknown_attack_names_the_key():
    with pytest.raises(ConfigError) as e:
        apply_attack("reverse", "sign", sample("sign"), gen())
    assert e.value.key == "byzantine.attack" and e.value.value == "reverse"
    assert "did you mean 'reversed'" in str(e.value) and "'wrong-seed'" in str(e.value)


@pytest.mark.parametrize(
    ("num_clients", "fraction", "count"),
    # 0.58 * 25 + 0.5 is 14.999999999999998 in floats; 14.5 rounds half up to 15.
    [(5, 0.2, 1), (5, 0.4, 2), (10, 0.3, 3), (5, 0.1, 1), (5, 0.0, 0), (5, 0.3, 2), (25, 0.58, 15)],
)
def test_byzantine_count_rounds_half_up(num_clients, fraction, count):
    for seed in range(3):
        ids = byzantine_clients(num_clients, fraction, seed)
        assert len(ids) == count
        assert ids == sorted(set(ids)) and all(0 <= i < num_clients for i in ids)


@pytest.mark.parametrize(("num_clients", "fraction"), [(5, 1.0), (5, -0.1), (5, 0.95), (5, math.nan)])
def test_byzantine_fraction_out_of_range_is_refused(num_clients, fraction):
    with pytest.raises(ConfigError) as e:
        byzantine_clients(num_clients, fraction, 0)
    assert e.value.key == "byzantine.fraction"


def test_byzantine_clients_come_from_the_named_stream_and_are_uniform():
    assert byzantine_clients(10, 0.3, 5) == sorted(numpy_rng(5, "byzantine").choice(10, 3, replace=False))
    assert byzantine_clients(10, 0.3, 5) == byzantine_clients(10, 0.3, 5)
    draws = [byzantine_clients(10, 0.3, s) for s in range(2000)]
    assert len({tuple(d) for d in draws[:20]}) > 1
    for client in range(10):
        share = sum(client in d for d in draws) / len(draws)
        assert 0.25 < share < 0.35, (client, share)  # 0.3 +- 5 standard errors
