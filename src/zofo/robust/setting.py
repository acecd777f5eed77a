"""The robustness setting of a run: checked against what the method sends, applied by the engine.

A method declares the kind of each field of its uplink payload (``payload_kinds``) and the aggregation
rules it can combine its clients with (``aggregators``); this module refuses a setting that would be a
silent no-op (an attack that touches none of the method's fields) or meaningless (a rule the method's
payload does not support), naming the key, the value and what is allowed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from zofo.core.errors import ConfigError, did_you_mean
from zofo.robust.aggregators import AGGREGATORS, robust_floor
from zofo.robust.attacks import ATTACKS, apply_attack

NO_ATTACK = "none"


def check_robust_setting(method_cls: Any, params: Any, byzantine: Any, aggregator: Any) -> None:
    """Raise ConfigError unless the attack and the aggregation rule apply to this method."""
    kinds = set(method_cls.payload_kinds(params).values())
    if byzantine.attack != NO_ATTACK:  # a known name: ByzantineConfig checks it
        if not ATTACKS[byzantine.attack] & kinds:
            usable = sorted(a for a, k in ATTACKS.items() if k & kinds)
            raise ConfigError(
                "byzantine.attack",
                byzantine.attack,
                f"an attack on {method_cls.__name__}'s payload ({sorted(kinds)}): one of {usable}",
            )
    elif byzantine.fraction > 0:
        raise ConfigError("byzantine.attack", NO_ATTACK, "an attack when byzantine.fraction > 0")
    allowed = method_cls.aggregators(params)
    if aggregator.name not in allowed:
        hint = did_you_mean(aggregator.name, AGGREGATORS) if aggregator.name not in AGGREGATORS else ""
        raise ConfigError(
            "aggregator.name", aggregator.name, f"for {method_cls.__name__}: one of {list(allowed)}{hint}"
        )


def attack_payload(
    payload: Mapping[str, torch.Tensor],
    kinds: Mapping[str, str],
    attack: str,
    gen: torch.Generator,
    strength: float,
) -> dict[str, torch.Tensor]:
    """The payload a Byzantine client sends instead: every field of a kind the attack targets replaced."""
    return {
        key: apply_attack(attack, kinds[key], value, gen, strength)
        if kinds.get(key) in ATTACKS[attack]
        else value
        for key, value in payload.items()
    }


# One expected field of a payload: (shape, dtype).
FieldSpec = tuple[tuple[int, ...], torch.dtype]


def validate_payload(payload: Mapping[str, torch.Tensor], spec: Mapping[str, FieldSpec]) -> str | None:
    """Why the server must reject ``payload`` (wrong fields, shape, dtype, or a non-finite number), or
    None when it is well-formed. Method-specific checks (the expected seeds) come on top of this."""
    if set(payload) != set(spec):
        return f"fields {sorted(payload)}, expected {sorted(spec)}"
    for key, (shape, dtype) in spec.items():
        value = payload[key]
        if value.dtype != dtype:
            return f"{key}: dtype {value.dtype}, expected {dtype}"
        if tuple(value.shape) != tuple(shape):
            return f"{key}: shape {tuple(value.shape)}, expected {tuple(shape)}"
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            return f"{key}: {bad} non-finite value{'s' if bad > 1 else ''}"
    return None


def selection_weights(name: str, values: torch.Tensor, trim: float) -> torch.Tensor:
    """Weights w (summing to 1) over n scalars that each move the model along their own direction, so
    that sum_k w_k values_k is the rule's aggregate of the scalars: mean 1/n; median the middle one
    (the two middle ones, half each, for even n); trimmed-mean 1/(n - 2b) on all but the b largest and
    b smallest. Used where clients' scalars are not aligned on shared seeds (ZO-FedSGD)."""
    n = values.numel()
    w = torch.zeros(n, dtype=torch.float64)
    # n scalars: ranked on the CPU, beside the weights, wherever they were decoded.
    order = torch.sort(values.reshape(-1).to("cpu", torch.float64), stable=True).indices
    if name == "mean":
        w[:] = 1.0 / n
    elif name == "median":
        mid = order[[n // 2]] if n % 2 else order[[n // 2 - 1, n // 2]]
        w[mid] = 1.0 / len(mid)
    elif name == "trimmed-mean":
        b = robust_floor(trim * n)
        if 2 * b >= n:
            raise ValueError(f"trimmed-mean: trim = {trim} with n = {n} drops every value")
        w[order[b : n - b]] = 1.0 / (n - 2 * b)
    else:
        raise ValueError(f"selection_weights: rule {name!r}; allowed: mean, median, trimmed-mean")
    return w
