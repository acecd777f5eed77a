"""Partitioners: who holds which training examples. Deterministic given the run seed.

Each returns one sorted index list per client. ``partition_hash`` fingerprints the result, so two
runs that claim the same partition can be checked to have it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import numpy as np

from zofo.core.config import PartitionConfig
from zofo.core.errors import ConfigError, ZofoError
from zofo.core.registry import PARTITIONERS

MAX_DRAWS = 1000


@PARTITIONERS.register("iid")
def iid(
    labels: Sequence[int], keys: Sequence[str], cfg: PartitionConfig, rng: np.random.Generator
) -> list[list[int]]:
    """Uniformly shuffled, equal-size shards."""
    _check_enough(len(labels), cfg)
    perm = rng.permutation(len(labels))
    return [sorted(s.tolist()) for s in np.array_split(perm, cfg.num_clients)]


@PARTITIONERS.register("dirichlet")
def dirichlet(
    labels: Sequence[int], keys: Sequence[str], cfg: PartitionConfig, rng: np.random.Generator
) -> list[list[int]]:
    """Per class, client proportions ~ Dirichlet(alpha); redrawn until every client has min_size.

    The common label-skew partition (Hsu et al. 2019; FedKSeed's Dolly split and FeedSign's non-iid
    setting use it with alpha = 0.5).
    """
    _check_enough(len(labels), cfg)
    labels = np.asarray(labels)
    classes = np.unique(labels)
    for _ in range(MAX_DRAWS):
        shards: list[list[int]] = [[] for _ in range(cfg.num_clients)]
        for c in classes:
            idx = rng.permutation(np.flatnonzero(labels == c))
            props = rng.dirichlet(np.full(cfg.num_clients, cfg.alpha))
            cuts = (np.cumsum(props)[:-1] * len(idx)).astype(int)
            for k, part in enumerate(np.split(idx, cuts)):
                shards[k] += part.tolist()
        if min(len(s) for s in shards) >= cfg.min_size:
            return [sorted(s) for s in shards]
    raise ZofoError(
        f"partition: no Dirichlet(alpha={cfg.alpha}) draw in {MAX_DRAWS} gave every one of "
        f"{cfg.num_clients} clients >= {cfg.min_size} examples; raise partition.alpha, lower "
        "partition.min_size or partition.num_clients"
    )


@PARTITIONERS.register("natural")
def natural(
    labels: Sequence[int], keys: Sequence[str], cfg: PartitionConfig, rng: np.random.Generator
) -> list[list[int]]:
    """Clients are groups of key values (e.g. one chatterbot category per client when the counts match).

    Distinct key values are shuffled and dealt round-robin to the clients, so each value lives on
    exactly one client.
    """
    keys = np.asarray(keys)
    values = np.unique(keys)
    if len(values) < cfg.num_clients:
        raise ConfigError(
            "partition.num_clients",
            cfg.num_clients,
            f"at most {len(values)}, the number of distinct values of '{cfg.key}'",
        )
    order = rng.permutation(values)
    shards: list[list[int]] = [[] for _ in range(cfg.num_clients)]
    for i, v in enumerate(order):
        shards[i % cfg.num_clients] += np.flatnonzero(keys == v).tolist()
    return _sorted_with_min_size(
        shards, cfg, f"the natural partition by '{cfg.key}'", "partition.num_clients"
    )


@PARTITIONERS.register("pathological")
def pathological(
    labels: Sequence[int], keys: Sequence[str], cfg: PartitionConfig, rng: np.random.Generator
) -> list[list[int]]:
    """Every client holds examples of exactly ``classes_per_client`` labels (McMahan et al. 2017).

    Unlike the paper's random shards, a client never gets two shards of one label, and every label is
    held by as equal a number of clients as possible: the labels are shuffled into a cycle and the
    clients, in shuffled order, take consecutive windows of k labels from it, so each label is used
    floor or ceil(num_clients * k / num_labels) times. Each label's examples are shuffled and split
    into equal parts (sizes differ by at most one) among the clients holding it.
    """
    _check_enough(len(labels), cfg)
    labels = np.asarray(labels)
    classes = np.unique(labels)
    k, n_clients = cfg.classes_per_client, cfg.num_clients
    # Fewer label slots than labels would leave some examples on no client.
    fewest = -(-len(classes) // n_clients)
    if not fewest <= k <= len(classes):
        raise ConfigError(
            "partition.classes_per_client",
            k,
            f"{fewest}..{len(classes)} for {len(classes)} labels and {n_clients} clients",
        )
    cycle = rng.permutation(classes)
    client_order = rng.permutation(n_clients)
    holders: dict[int, list[int]] = {int(c): [] for c in classes}
    for slot, client in enumerate(client_order):
        for j in range(k):
            holders[int(cycle[(slot * k + j) % len(classes)])].append(int(client))
    shards: list[list[int]] = [[] for _ in range(n_clients)]
    for c, owners in holders.items():
        idx = rng.permutation(np.flatnonzero(labels == c))
        if len(idx) < len(owners):
            raise ZofoError(
                f"partition: label {c} has {len(idx)} examples but {len(owners)} clients should hold it; "
                "lower partition.num_clients or partition.classes_per_client"
            )
        # Shuffled owners, so the larger parts of an uneven split do not always go to the same clients.
        for owner, part in zip(rng.permutation(owners), np.array_split(idx, len(owners)), strict=True):
            shards[int(owner)] += part.tolist()
    return _sorted_with_min_size(
        shards,
        cfg,
        "the pathological partition",
        "partition.num_clients, or raise partition.classes_per_client",
    )


def _sorted_with_min_size(
    shards: list[list[int]], cfg: PartitionConfig, what: str, remedy: str
) -> list[list[int]]:
    """The shards, each sorted, or ZofoError when one holds fewer than ``min_size`` examples."""
    smallest = min(len(s) for s in shards)
    if smallest < cfg.min_size:
        raise ZofoError(
            f"partition: {what} gives a client only {smallest} examples, fewer than partition.min_size = "
            f"{cfg.min_size}; lower partition.min_size or {remedy}"
        )
    return [sorted(s) for s in shards]


def _check_enough(n: int, cfg: PartitionConfig) -> None:
    if n < cfg.num_clients * max(cfg.min_size, 1):
        raise ConfigError(
            "partition.num_clients",
            cfg.num_clients,
            f"at most {n // max(cfg.min_size, 1)} for {n} training examples and min_size {cfg.min_size}",
        )


def partition(
    labels: Sequence[int], keys: Sequence[str], cfg: PartitionConfig, rng: np.random.Generator
) -> list[list[int]]:
    fn = PARTITIONERS.get(cfg.name, "partition.name")
    return fn(labels, keys, cfg, rng)


def partition_hash(shards: Sequence[Sequence[int]]) -> str:
    return hashlib.sha256(json.dumps([list(map(int, s)) for s in shards]).encode()).hexdigest()[:16]


def label_histograms(
    labels: Sequence[int], shards: Sequence[Sequence[int]], num_labels: int
) -> list[list[int]]:
    labels = np.asarray(labels)
    return [np.bincount(labels[list(s)], minlength=num_labels).tolist() for s in shards]
