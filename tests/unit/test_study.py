"""zofo.grid.study: named studies expand into run folders; a run shared by two studies is one folder, two
different configs for one folder are refused, and the default config's Byzantine study covers every
method, its matched attack, >= 4 fractions with 0, the mean and a robust rule."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from zofo.core.config import RunConfig
from zofo.core.registry import METHODS
from zofo.grid import study
from zofo.robust.attacks import ATTACKS

ROOT = Path(__file__).resolve().parents[2]


def base_config(**studies) -> dict:
    return {
        "label": "t",
        "threads_per_run": 1,
        "seeds": [0],
        "alphas": [0.5],
        "run_defaults": {
            "model": {"name": "tiny-llama"},
            "partition": {"name": "dirichlet", "num_clients": 5},
        },
        "methods": {"fedavg": {"method": {"params": {"lr": 1e-3}}}},
        "studies": studies,
    }


def test_run_folders_are_named_by_method_grid_values_and_seed() -> None:
    cell = {"byzantine.fraction": 0.2, "aggregator.name": "median", "federation.rounds": 3}
    assert study.run_dir("fedavg", cell, 1) == "fedavg/byz0.2/agg-median/federation.rounds=3/seed1"
    assert study.run_dir("feedsign", {"partition.alpha": 0.5}, 0) == "feedsign/alpha0.5/seed0"


def run_dir_regex(methods: str = r"[^/]+") -> re.Pattern[str]:
    """study.RUN_DIR as the regular expression Snakemake builds from it and its wildcards' constraints."""
    parts = {"method": methods, "cell": study.CELL_PATTERN, "seed": study.SEED_PATTERN}
    return re.compile(study.RUN_DIR.format(**{k: f"(?P<{k}>{v})" for k, v in parts.items()}))


@pytest.mark.parametrize("name", ["config.yaml", "llm.yaml", "smoke.yaml"])
def test_every_run_folder_is_named_by_the_run_rules_wildcards(name: str) -> None:
    # The run rule's output is RUN_DIR with these constraints: every folder a config declares must match
    # it whole, and the parts it matches must name that folder again (the rule's params lookup).
    config = yaml.safe_load((ROOT / "config" / name).read_text())
    runs, members = study.expand(config)
    pattern = run_dir_regex()
    for path in {p for folders in members.values() for p in folders}:
        match = pattern.fullmatch(path)
        assert match is not None, path
        assert study.RUN_DIR.format(**match.groupdict()) == path
        assert match["seed"] == path.rsplit("seed", 1)[1]


def test_a_run_whose_grid_values_are_all_null_still_matches() -> None:
    path = study.run_dir("fedavg", {"byzantine.fraction": None}, 3)
    assert path == "fedavg/seed3"
    match = run_dir_regex().fullmatch(path)
    assert match is not None and match.groupdict() == {"method": "fedavg", "cell": "", "seed": "3"}


def test_a_folder_without_a_numbered_seed_last_is_not_a_run() -> None:
    pattern = run_dir_regex()
    for path in ("fedavg/alpha0.5", "fedavg/alpha0.5/seed", "fedavg/alpha0.5/seedx", "fedavg/seed0/alpha0.5"):
        assert pattern.fullmatch(path) is None, path


def test_a_run_two_studies_declare_runs_once() -> None:
    # The second study declares the main study's fedavg run again (same config, same grid value).
    config = base_config(
        again={
            "methods": {"fedavg": {"method": {"params": {"lr": 1e-3}}}},
            "grid": {"partition.alpha": [0.5]},
        }
    )
    runs, members = study.expand(config)
    assert list(runs) == ["fedavg/alpha0.5/seed0"]
    assert members == {"main": ["fedavg/alpha0.5/seed0"], "again": ["fedavg/alpha0.5/seed0"]}


def test_two_configs_for_one_folder_are_refused() -> None:
    config = base_config(
        other={
            "methods": {"fedavg": {"method": {"params": {"lr": 1e-2}}}},
            "grid": {"partition.alpha": [0.5]},
        }
    )
    with pytest.raises(ValueError, match="fedavg/alpha0.5/seed0.*'main' and 'other'") as e:
        study.expand(config)
    # the message names the key that differs and both values
    assert "method.params.lr: 0.01 against 0.001" in str(
        e.value
    ) or "method.params.lr: 0.001 against 0.01" in str(e.value)


def test_a_conflict_caused_by_an_invalid_value_names_the_value() -> None:
    config = base_config(
        other={
            "methods": {"fedavg": {"method": {"params": {"lr": float("nan")}}}},
            "grid": {"partition.alpha": [0.5]},
        }
    )
    with pytest.raises(ValueError, match=r"fedavg/alpha0.5/seed0 .*method.params.lr: got nan") as e:
        study.expand(config)
    assert "different configs" not in str(e.value)


def test_grid_values_and_overrides_reach_the_run_config() -> None:
    config = base_config(
        byz={
            "methods": {
                "fedavg": {"byzantine": {"attack": "scaled"}},
                "feedsign": {"byzantine": {"attack": "reversed"}},
            },
            "grid": {"byzantine.fraction": [0.0, 0.4], "aggregator.name": ["mean", "median"]},
            "grid_overrides": {"feedsign": {"aggregator.name": ["majority"]}},
            "seeds": [3],
        }
    )
    runs, members = study.expand(config)
    byz = [runs[p] for p in members["byz"]]
    assert len(byz) == 2 * 2 + 2 * 1
    assert {(r["method"]["name"], r["byzantine"]["fraction"], r["aggregator"]["name"]) for r in byz} == {
        ("fedavg", 0.0, "mean"),
        ("fedavg", 0.0, "median"),
        ("fedavg", 0.4, "mean"),
        ("fedavg", 0.4, "median"),
        ("feedsign", 0.0, "majority"),
        ("feedsign", 0.4, "majority"),
    }
    assert all(r["seed"] == 3 and r["byzantine"]["attack"] in ("scaled", "reversed") for r in byz)
    assert "feedsign/byz0.4/agg-majority/seed3" in members["byz"]


def test_grid_overrides_must_name_grid_axes() -> None:
    config = base_config(
        s={
            "methods": {"fedavg": {}},
            "grid": {"byzantine.fraction": [0.0]},
            "grid_overrides": {"fedavg": {"seed": [1]}},
        }
    )
    with pytest.raises(ValueError, match="not grid axes"):
        study.expand(config)


def test_the_default_byzantine_study_covers_every_method_with_and_without_a_robust_rule() -> None:
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    runs, members = study.expand(config)
    byz = [runs[p] for p in members["byzantine"]]
    for r in byz:
        RunConfig.from_dict(r)  # every cell is a valid run (the attack applies, the rule applies)
    assert {r["method"]["name"] for r in byz} == set(METHODS.names())
    for name in METHODS.names():
        mine = [r for r in byz if r["method"]["name"] == name]
        built = [RunConfig.from_dict(r) for r in mine]
        fractions = sorted({c.byzantine.fraction for c in built})
        assert len(fractions) >= 4 and fractions[0] == 0, (name, fractions)
        # every attacked run runs an attack; fraction 0 has no attacker, hence no attack
        assert all(c.byzantine.attack in ATTACKS for c in built if c.byzantine.fraction > 0), name
        assert all(c.byzantine.attack == "none" for c in built if c.byzantine.fraction == 0), name
        rules = {c.aggregator.name for c in built}
        if name == "feedsign":
            assert len(rules) == 1 and rules <= {"mean", "majority"}  # its vote is its rule; no other applies
        else:
            assert "mean" in rules and rules - {"mean"}, (name, rules)


def test_iid_among_the_alphas_is_an_iid_partition_in_its_own_folder() -> None:
    config = base_config(
        heterogeneity={
            "methods": {"fedavg": {"method": {"params": {"lr": 1e-3}}}},
            "grid": {"partition.alpha": [0.5, "iid"]},
            "figure": "heterogeneity",
        }
    )
    runs, members = study.expand(config)
    # alpha 0.5 is the main study's run (same config): shared; iid is a new folder and partition
    assert members["heterogeneity"] == ["fedavg/alpha0.5/seed0", "fedavg/alpha-iid/seed0"]
    iid = RunConfig.from_dict(runs["fedavg/alpha-iid/seed0"])
    assert iid.partition.name == "iid"
    assert RunConfig.from_dict(runs["fedavg/alpha0.5/seed0"]).partition.name == "dirichlet"


def test_rule_methods_get_the_main_cells_and_join_its_members_only() -> None:
    config = {
        **base_config(),
        "seeds": [0, 1],
        "rule_methods": {"local-only": {"method": {"params": {"lr": 2}}}},
    }
    rule_runs = study.rule_runs(config)
    assert sorted(rule_runs) == ["local-only/alpha0.5/seed0", "local-only/alpha0.5/seed1"]
    cfg = rule_runs["local-only/alpha0.5/seed1"]
    assert cfg["seed"] == 1 and cfg["method"] == {"name": "local-only", "params": {"lr": 2}}
    assert cfg["partition"]["alpha"] == 0.5 and cfg["model"] == {"name": "tiny-llama"}
    runs, members = study.expand(config)
    assert not set(rule_runs) & set(runs), "the generic run rule must not claim a rule method's folders"
    assert set(rule_runs) <= set(members["main"])
    clash = {**config, "rule_methods": {"fedavg": {}}}
    with pytest.raises(ValueError, match="rule_methods.fedavg"):
        study.rule_runs(clash)


def test_a_null_grid_value_names_no_folder_part_so_the_default_run_is_shared() -> None:
    # One-shot against model size: the full model (layers null) is the heterogeneity study's run.
    block = {"method": {"params": {"lr": 1e-3}}}
    config = base_config(
        het={"methods": {"fedavg": block}, "grid": {"model.name": ["tiny-llama"], "partition.alpha": [0.5]}},
        sizes={
            "methods": {"fedavg": block},
            "grid": {"model.name": ["tiny-llama"], "partition.alpha": [0.5], "model.layers": [1, None]},
        },
    )
    runs, members = study.expand(config)
    assert members["sizes"] == [
        "fedavg/model-tiny-llama/alpha0.5/layers1/seed0",
        "fedavg/model-tiny-llama/alpha0.5/seed0",
    ]
    assert members["het"] == ["fedavg/model-tiny-llama/alpha0.5/seed0"]
    assert RunConfig.from_dict(runs["fedavg/model-tiny-llama/alpha0.5/seed0"]).model.layers is None


def test_the_main_grid_adds_axes_and_names_them_in_the_folders() -> None:
    # A main study over model sizes: the alphas come from the grid, and a null value (the whole model)
    # names no folder part, so that run is the one a study without the axis declares.
    config = base_config(
        heterogeneity={
            "methods": {"fedavg": {"method": {"params": {"lr": 1e-3}}}},
            "grid": {"model.name": ["tiny-llama"], "partition.alpha": [0.5, "iid"]},
        }
    )
    del config["alphas"]
    config["grid"] = {"model.name": ["tiny-llama"], "partition.alpha": [0.5], "model.layers": [1, None]}
    runs, members = study.expand(config)
    assert members["main"] == [
        "fedavg/model-tiny-llama/alpha0.5/layers1/seed0",
        "fedavg/model-tiny-llama/alpha0.5/seed0",
    ]
    assert members["heterogeneity"][0] == "fedavg/model-tiny-llama/alpha0.5/seed0"  # shared, one job
    assert len(runs) == 3
    assert runs["fedavg/model-tiny-llama/alpha0.5/layers1/seed0"]["model"]["layers"] == 1
    assert runs["fedavg/model-tiny-llama/alpha0.5/layers1/seed0"]["partition"]["alpha"] == 0.5
    assert study.expand_runs(config) == [runs[p] for p in members["main"]]
    # A method written as a workflow rule gets the same cells.
    config["rule_methods"] = {"local-only": {}}
    assert list(study.rule_runs(config)) == [
        "local-only/model-tiny-llama/alpha0.5/layers1/seed0",
        "local-only/model-tiny-llama/alpha0.5/seed0",
    ]


def test_the_main_alphas_come_from_exactly_one_place() -> None:
    both = base_config()
    both["grid"] = {"partition.alpha": [0.1]}
    with pytest.raises(ValueError, match="both give"):
        study.main_grid(both)
    neither = base_config()
    del neither["alphas"]
    with pytest.raises(ValueError, match="needs its Dirichlet alphas"):
        study.main_grid(neither)
    assert study.main_grid(base_config()) == {"partition.alpha": [0.5]}


def test_a_null_grid_value_sets_nothing_and_shares_the_run() -> None:
    # K: null is the method's own K: the sweep's run is the main study's run, one folder and one job.
    config = base_config(
        sweep={
            "methods": {"fedavg": {"method": {"params": {"lr": 1e-3}}}},
            "grid": {"partition.alpha": [0.5], "method.params.lr": [1e-2, None]},
        }
    )
    runs, members = study.expand(config)
    assert members["sweep"] == ["fedavg/alpha0.5/method.params.lr=0.01/seed0", "fedavg/alpha0.5/seed0"]
    assert members["main"] == ["fedavg/alpha0.5/seed0"] and len(runs) == 2
    assert runs["fedavg/alpha0.5/seed0"]["method"]["params"]["lr"] == 1e-3
    assert runs["fedavg/alpha0.5/method.params.lr=0.01/seed0"]["method"]["params"]["lr"] == 1e-2
