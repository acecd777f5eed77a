"""Byzantine attacks: pure transforms of one uplink value, chosen by the kind of payload it is.

Payload kinds: "sign" (bool tensor of votes), "scalar" (float tensor of projected-gradient scalars),
"dense" (float tensor: a model update) and "seed" (integer tensor of 32-bit seeds). Each attack maps
``(value, gen, strength)`` to a new tensor of the same shape, dtype and device and never writes to its
input. Random attacks draw only from ``gen`` (a CPU generator the caller derives with zofo.core.seeds), so an
attacked run is as reproducible as an honest one.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from zofo.core.errors import ConfigError, did_you_mean
from zofo.core.seeds import numpy_rng
from zofo.robust.aggregators import robust_floor

KINDS = frozenset({"sign", "scalar", "dense", "seed"})
FLOAT_KINDS = frozenset({"scalar", "dense"})

Attack = Callable[[Tensor, torch.Generator, float], Tensor]

# Magnitude of the "huge" scalar attack per unit of strength: far beyond any honest projected gradient
# (those are differences of losses divided by 2 eps, typically below 1e3) yet finite in float32.
HUGE = 1e6


def _draw(shape: torch.Size, gen: torch.Generator, like: Tensor, sampler: Callable[..., Tensor]) -> Tensor:
    # The generator lives on the CPU; draw there and move, so the numbers do not depend on the device.
    return sampler(shape, gen).to(like.device)


def _reversed(value: Tensor, gen: torch.Generator, strength: float) -> Tensor:
    return torch.logical_not(value)


def _random_signs(value: Tensor, gen: torch.Generator, strength: float) -> Tensor:
    return _draw(value.shape, gen, value, lambda s, g: torch.randint(0, 2, s, generator=g) == 1)


def _constant(value: Tensor, gen: torch.Generator, strength: float) -> Tensor:
    return torch.ones_like(value, dtype=torch.bool)


def _random_scalars(value: Tensor, gen: torch.Generator, strength: float) -> Tensor:
    # Scaled to the honest magnitude so the noise is not trivially filtered by a norm threshold; the
    # 1 + keeps it non-zero when the honest scalars are all zero.
    scale = strength * (1.0 + (value.abs().max().item() if value.numel() else 0.0))
    noise = _draw(value.shape, gen, value, lambda s, g: torch.randn(s, generator=g, dtype=value.dtype))
    return noise * scale


def _scaled_negative(value: Tensor, gen: torch.Generator, strength: float) -> Tensor:
    return value * (-strength)


def _huge(value: Tensor, gen: torch.Generator, strength: float) -> Tensor:
    # A zero honest scalar is pushed to +HUGE rather than left at 0, so the attack always does something.
    return torch.where(value < 0, -1.0, 1.0).to(value.dtype) * (strength * HUGE)


def _sign_flip(value: Tensor, gen: torch.Generator, strength: float) -> Tensor:
    return -value


def _gaussian(value: Tensor, gen: torch.Generator, strength: float) -> Tensor:
    # Pure noise in place of the update, each coordinate N(0, sigma^2) with sigma = strength * the
    # update's root mean square: the noise norm is then about strength * the honest norm, so one
    # strength means the same thing for a tiny LoRA update and a full-model one. An all-zero update
    # gets sigma = strength, so the attack is never a silent no-op.
    rms = value.detach().double().pow(2).mean().sqrt().item() if value.numel() else 0.0
    sigma = strength * (rms if rms > 0 else 1.0)
    noise = _draw(value.shape, gen, value, lambda s, g: torch.randn(s, generator=g, dtype=value.dtype))
    return noise * sigma


def _scaled(value: Tensor, gen: torch.Generator, strength: float) -> Tensor:
    return value * strength


def _wrong_seed(value: Tensor, gen: torch.Generator, strength: float) -> Tensor:
    # honest + 1 + r (mod 2^32) with r uniform on [0, 2^32 - 2] is uniform over the 2^32 - 1 seeds
    # other than the honest one, without a rejection loop.
    offset = _draw(value.shape, gen, value, lambda s, g: torch.randint(0, 2**32 - 1, s, generator=g))
    return (value.to(torch.int64) + 1 + offset).remainder(2**32).to(value.dtype)


def _nan(value: Tensor, gen: torch.Generator, strength: float) -> Tensor:
    return torch.full_like(value, math.nan)


def _inf(value: Tensor, gen: torch.Generator, strength: float) -> Tensor:
    return torch.full_like(value, math.inf)


_IMPLEMENTATIONS: dict[tuple[str, str], Attack] = {
    ("reversed", "sign"): _reversed,
    ("random", "sign"): _random_signs,
    ("constant", "sign"): _constant,
    ("random", "scalar"): _random_scalars,
    ("scaled-negative", "scalar"): _scaled_negative,
    ("huge", "scalar"): _huge,
    ("sign-flip", "dense"): _sign_flip,
    ("gaussian", "dense"): _gaussian,
    ("scaled", "dense"): _scaled,
    ("wrong-seed", "seed"): _wrong_seed,
    **{(name, kind): fn for name, fn in [("nan", _nan), ("inf", _inf)] for kind in sorted(FLOAT_KINDS)},
}

# Attack name -> the payload kinds it changes.
ATTACKS: dict[str, frozenset[str]] = {
    name: frozenset(k for n, k in _IMPLEMENTATIONS if n == name) for name, _ in _IMPLEMENTATIONS
}


def _check_dtype(kind: str, value: Tensor) -> None:
    ok = {
        "sign": value.dtype == torch.bool,
        "scalar": value.is_floating_point(),
        "dense": value.is_floating_point(),
        "seed": not value.is_floating_point() and not value.is_complex() and value.dtype != torch.bool,
    }[kind]
    if not ok:
        raise ValueError(f"attack on a {kind} payload: got dtype {value.dtype}")


def apply_attack(name: str, kind: str, value: Tensor, gen: torch.Generator, strength: float = 1.0) -> Tensor:
    """Apply attack ``name`` to one value of payload ``kind``.

    A kind the attack does not target comes back unchanged (the same tensor), so attacking a whole
    payload field by field touches only the fields that match. ``strength`` is ignored by the attacks
    that have no magnitude (the sign attacks, sign-flip, wrong-seed, nan, inf); for "scaled",
    ``strength`` = number of clients makes the mean equal the attacker's update (model replacement).
    """
    if name not in ATTACKS:
        raise ConfigError("byzantine.attack", name, f"one of {sorted(ATTACKS)}" + did_you_mean(name, ATTACKS))
    if kind not in KINDS:
        raise ValueError(f"attack: payload kind {kind!r}; allowed: one of {sorted(KINDS)}")
    fn = _IMPLEMENTATIONS.get((name, kind))
    if fn is None:
        return value
    _check_dtype(kind, value)
    return fn(value, gen, strength)


def byzantine_clients(num_clients: int, fraction: float, seed: int) -> list[int]:
    """The sorted ids of the Byzantine clients: ``floor(fraction * num_clients + 1/2)`` of them (round
    half up, with float error such as ``0.3 * 10 = 3.0000000000000004`` absorbed), drawn uniformly
    without replacement from ``numpy_rng(seed, "byzantine")``.

    ``fraction`` must lie in [0, 1); a fraction that rounds up to every client (e.g. 0.9 of 5) is
    refused too, because a federation without an honest client measures nothing.
    """
    if num_clients < 1:
        raise ValueError(f"byzantine_clients: num_clients = {num_clients}; allowed: >= 1")
    if not 0 <= fraction < 1:
        raise ConfigError("byzantine.fraction", fraction, "a number in [0, 1)")
    count = robust_floor(fraction * num_clients + 0.5)
    if count >= num_clients:
        raise ConfigError(
            "byzantine.fraction",
            fraction,
            f"below {(num_clients - 0.5) / num_clients:g} for {num_clients} clients "
            f"({fraction} of {num_clients} rounds to all {count} clients)",
        )
    rng: np.random.Generator = numpy_rng(seed, "byzantine")
    return sorted(int(i) for i in rng.choice(num_clients, size=count, replace=False))
