"""Partitioners: deterministic, disjoint and covering, min_size respected, Dirichlet skew measurable."""

from __future__ import annotations

import numpy as np
import pytest

from zofo.core.config import PartitionConfig
from zofo.core.errors import ConfigError, ZofoError
from zofo.core.registry import PARTITIONERS
from zofo.core.seeds import numpy_rng
from zofo.engine.partition import label_histograms, partition, partition_hash

NUM_LABELS = 5
LABELS = np.repeat(np.arange(NUM_LABELS), 200)  # 1,000 examples, 200 per class
KEYS = np.array([f"group{i % 12}" for i in range(len(LABELS))])  # 12 balanced natural groups


def cfg(name: str, **kw) -> PartitionConfig:
    return PartitionConfig(name=name, **{"num_clients": 10, "min_size": 8, **kw})


def shards_of(name: str, seed: int = 0, labels=LABELS, keys=KEYS, **kw) -> list[list[int]]:
    return partition(labels, keys, cfg(name, **kw), numpy_rng(seed, "partition"))


def mean_tv_from_global(shards: list[list[int]], labels=LABELS) -> float:
    """Mean total-variation distance of each client's label distribution from the global one."""
    glob = np.bincount(labels, minlength=NUM_LABELS) / len(labels)
    tvs = []
    for s in shards:
        local = np.bincount(labels[s], minlength=NUM_LABELS) / len(s)
        tvs.append(0.5 * np.abs(local - glob).sum())
    return float(np.mean(tvs))


def test_registered_partitioners_are_the_documented_ones():
    assert {"iid", "dirichlet", "natural", "pathological"} <= set(PARTITIONERS.names())


@pytest.mark.parametrize("name", ["iid", "dirichlet", "natural", "pathological"])
def test_same_seed_same_shards_and_hash(name):
    a, b = shards_of(name, seed=3), shards_of(name, seed=3)
    assert a == b
    assert partition_hash(a) == partition_hash(b)


@pytest.mark.parametrize("name", ["iid", "dirichlet", "natural", "pathological"])
def test_different_seed_different_shards_and_hash(name):
    a, b = shards_of(name, seed=3), shards_of(name, seed=4)
    assert a != b
    assert partition_hash(a) != partition_hash(b)


def test_hash_depends_on_assignment_not_only_sizes():
    a = [[0, 1], [2, 3]]
    assert partition_hash(a) != partition_hash([[0, 2], [1, 3]])
    assert partition_hash(a) != partition_hash([[2, 3], [0, 1]])  # which client holds what matters
    assert partition_hash(a) == partition_hash([[0, 1], [2, 3]])


@pytest.mark.parametrize("name", ["iid", "dirichlet", "natural", "pathological"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_disjoint_covering_sorted_and_min_size(name, seed):
    shards = shards_of(name, seed=seed, alpha=0.3)
    assert len(shards) == 10
    flat = [i for s in shards for i in s]
    assert len(flat) == len(set(flat)), "an example is on two clients"
    assert sorted(flat) == list(range(len(LABELS))), "examples are missing from every client"
    for s in shards:
        assert s == sorted(s)
        assert len(s) >= 8, f"a client has {len(s)} < min_size 8 examples"


def test_dirichlet_min_size_holds_under_heavy_skew():
    for seed in range(5):
        shards = shards_of("dirichlet", seed=seed, alpha=0.05, min_size=20)
        assert min(len(s) for s in shards) >= 20


def test_dirichlet_skew_is_measurable():
    """alpha 0.1 gives clients far more skewed label mixes than alpha 100 or iid (mean TV, 3 seeds)."""
    skew = {
        label: np.mean([mean_tv_from_global(shards_of(name, seed=s, alpha=a)) for s in range(3)])
        for label, name, a in [("a0.1", "dirichlet", 0.1), ("a100", "dirichlet", 100.0), ("iid", "iid", 0.5)]
    }
    # With 5 classes, a client holding mostly one or two classes is >= 0.4 TV away from uniform;
    # at alpha 100 / iid, client mixes deviate only by sampling noise (~0.05 for 100-example shards).
    assert skew["a0.1"] > 0.4, skew
    assert skew["a100"] < 0.15, skew
    assert skew["iid"] < 0.15, skew
    assert skew["a0.1"] > 3 * max(skew["a100"], skew["iid"]), skew


def test_label_histograms_count_each_client():
    shards = shards_of("dirichlet", seed=0, alpha=0.5)
    hists = label_histograms(LABELS, shards, NUM_LABELS)
    for s, h in zip(shards, hists, strict=True):
        assert sum(h) == len(s)
        assert h == [int((LABELS[s] == c).sum()) for c in range(NUM_LABELS)]
    assert np.sum(hists, axis=0).tolist() == [200] * NUM_LABELS


def test_natural_puts_each_key_value_on_exactly_one_client():
    shards = shards_of("natural", seed=5, num_clients=4)
    owner: dict[str, set[int]] = {}
    for k, s in enumerate(shards):
        for i in s:
            owner.setdefault(str(KEYS[i]), set()).add(k)
    assert set(owner) == set(KEYS.tolist())
    for value, clients in owner.items():
        assert len(clients) == 1, f"key value {value} is split over clients {clients}"
    assert all(len(s) > 0 for s in shards)


def test_natural_with_one_value_per_client():
    keys = np.array(["a", "b", "c"] * 10)
    shards = shards_of("natural", labels=np.zeros(30, dtype=int), keys=keys, num_clients=3, min_size=1)
    assert sorted(len({str(keys[i]) for i in s}) for s in shards) == [1, 1, 1]


def test_natural_respects_min_size_or_raises():
    """PartitionConfig.min_size promises every client >= min_size examples: a natural split whose
    smallest group cannot meet it must say so instead of silently returning a tiny client."""
    keys = np.array(["tiny"] * 2 + ["big1"] * 100 + ["big2"] * 100 + ["big3"] * 100)
    labels = np.zeros(len(keys), dtype=int)
    try:
        shards = shards_of("natural", labels=labels, keys=keys, num_clients=4, min_size=8)
    except ZofoError:
        return
    sizes = sorted(len(s) for s in shards)
    assert sizes[0] >= 8, f"natural partition gave client sizes {sizes} with partition.min_size 8"


@pytest.mark.parametrize("name", ["iid", "dirichlet"])
def test_too_many_clients_is_a_config_error(name):
    with pytest.raises(ConfigError) as e:
        shards_of(name, num_clients=200, min_size=8)  # 200 * 8 > 1,000 examples
    assert e.value.key == "partition.num_clients"
    assert "partition.num_clients" in str(e.value) and "200" in str(e.value)


def test_natural_more_clients_than_key_values_is_a_config_error():
    with pytest.raises(ConfigError) as e:
        shards_of("natural", num_clients=13)  # only 12 distinct values
    assert e.value.key == "partition.num_clients"
    assert "13" in str(e.value) and "12" in str(e.value)


def test_impossible_dirichlet_draw_is_a_clear_error():
    """Feasible by count (10 * 50 <= 1,000), but at alpha 0.001 each of the 5 classes lands (almost)
    whole on one client, so at most 5 of the 10 clients can reach 50 examples in any draw."""
    with pytest.raises(ZofoError, match=r"partition\.alpha|partition\.min_size") as e:
        shards_of("dirichlet", num_clients=10, alpha=0.001, min_size=50)
    assert "alpha=0.001" in str(e.value)


def test_unknown_partitioner_names_the_key():
    with pytest.raises(ConfigError) as e:
        shards_of("dirichlett")
    assert e.value.key == "partition.name"
    assert "dirichlett" in str(e.value) and "did you mean 'dirichlet'" in str(e.value)
    with pytest.raises(ConfigError, match="partition.name"):
        PARTITIONERS.get("nope", "partition.name")


def labels_held(shards: list[list[int]], labels=LABELS) -> list[set[int]]:
    return [set(labels[s].tolist()) for s in shards]


@pytest.mark.parametrize("k", [1, 2, 3, 5])
@pytest.mark.parametrize("seed", [0, 1])
def test_pathological_gives_every_client_exactly_k_labels_in_equal_parts(k, seed):
    shards = shards_of("pathological", seed=seed, classes_per_client=k)
    held = labels_held(shards)
    assert [len(h) for h in held] == [k] * 10
    # 10 clients * k slots over 5 labels: every label on exactly 2k clients, each holding 200 / 2k of
    # its examples (k = 3: 200 = 4 * 33 + 2 * 34).
    q, r = divmod(200, 2 * k)
    for c in range(NUM_LABELS):
        parts = [int((LABELS[s] == c).sum()) for s, h in zip(shards, held, strict=True) if c in h]
        assert sorted(parts) == [q] * (2 * k - r) + [q + 1] * r, (c, parts)
    flat = sorted(i for s in shards for i in s)
    assert flat == list(range(len(LABELS)))


def test_pathological_balances_label_use_when_it_cannot_be_equal():
    # 7 clients * 2 labels = 14 slots over 5 labels: four labels on 3 clients, one label on 2.
    shards = shards_of("pathological", seed=4, num_clients=7, classes_per_client=2)
    held = labels_held(shards)
    assert all(len(h) == 2 for h in held)
    uses = sorted(sum(c in h for h in held) for c in range(NUM_LABELS))
    assert uses == [2, 3, 3, 3, 3]
    for c in range(NUM_LABELS):
        parts = [int((LABELS[s] == c).sum()) for s, h in zip(shards, held, strict=True) if c in h]
        assert sum(parts) == 200 and max(parts) - min(parts) <= 1, (c, parts)  # 200/3 -> 66 or 67


def test_pathological_label_sets_depend_on_the_seed():
    sets = {
        tuple(sorted(tuple(sorted(h)) for h in labels_held(shards_of("pathological", seed=s))))
        for s in range(5)
    }
    assert len(sets) > 1


@pytest.mark.parametrize(("k", "clients", "allowed"), [(6, 10, "1..5"), (1, 2, "3..5")])
def test_pathological_impossible_classes_per_client_is_a_config_error(k, clients, allowed):
    with pytest.raises(ConfigError) as e:
        shards_of("pathological", num_clients=clients, classes_per_client=k)
    assert e.value.key == "partition.classes_per_client" and e.value.value == k
    assert allowed in str(e.value)


def test_pathological_respects_min_size_or_raises():
    labels = np.array([0] * 100 + [1] * 100 + [2] * 4)  # the client holding label 2 gets 4 < 8 examples
    with pytest.raises(ZofoError, match="min_size"):
        shards_of("pathological", labels=labels, keys=labels.astype(str), num_clients=3, classes_per_client=1)


def test_classes_per_client_must_be_positive():
    with pytest.raises(ConfigError) as e:
        PartitionConfig(classes_per_client=0)
    assert e.value.key == "partition.classes_per_client"


def test_pathological_label_with_fewer_examples_than_holders_is_an_error():
    # 3 clients * 2 labels over 2 labels: both labels on all 3 clients, but label 1 has only 2 examples.
    labels = np.array([0] * 100 + [1] * 2)
    with pytest.raises(ZofoError, match="label 1 has 2 examples but 3 clients"):
        shards_of("pathological", labels=labels, keys=labels.astype(str), num_clients=3, min_size=0)
