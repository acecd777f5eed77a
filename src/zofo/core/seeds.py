"""Named child seeds of one run seed.

Every random draw in a run (partition, cohort, per-client batches, ZO directions, tie breaks) comes from
a generator seeded by ``derive(seed, *names)``. The global RNGs of torch/numpy/random are never used,
so adding a draw in one place never shifts the draws anywhere else, and a run is reproducible bit for
bit and resumable from any round.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch


def derive(seed: int, *names: object) -> int:
    """A 63-bit child seed from a parent seed and a path of names (order matters)."""
    h = hashlib.blake2b(digest_size=8)
    h.update(str(int(seed)).encode())
    for n in names:
        h.update(b"/")
        h.update(str(n).encode())
    return int.from_bytes(h.digest(), "little") >> 1


def seed32(seed: int, *names: object) -> int:
    """A 32-bit child seed: what a ZO seed costs on the wire."""
    return derive(seed, *names) & 0xFFFFFFFF


def numpy_rng(seed: int, *names: object) -> np.random.Generator:
    return np.random.default_rng(derive(seed, *names))


def torch_rng(seed: int, *names: object) -> torch.Generator:
    return torch.Generator().manual_seed(derive(seed, *names))
