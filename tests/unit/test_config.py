"""Config errors name the key and the value; the CLI turns bad input into exit code 2 with the key shown."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from zofo.assets.catalog import PACKAGED
from zofo.assets.models import load_model
from zofo.cli import main
from zofo.core.config import ModelConfig, RunConfig
from zofo.core.errors import ConfigError, ZofoError
from zofo.core.registry import METHODS, PARTITIONERS, TASKS


def config_error(data) -> ConfigError:
    with pytest.raises(ConfigError) as e:
        RunConfig.from_dict(data)
    return e.value


def test_defaults_build_and_round_trip():
    cfg = RunConfig.from_dict({})
    assert cfg == RunConfig()
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    assert RunConfig.from_dict(cfg.to_dict()).hash() == cfg.hash()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 1  # type: ignore[misc]


def test_hash_changes_with_any_value():
    base = RunConfig.from_dict({})
    assert RunConfig.from_dict({"seed": 1}).hash() != base.hash()
    assert RunConfig.from_dict({"federation": {"rounds": 11}}).hash() != base.hash()
    assert RunConfig.from_dict({"method": {"name": "fedavg", "params": {"lr": 1e-4}}}).hash() != base.hash()


def test_unknown_top_level_key():
    e = config_error({"sed": 3})
    assert "sed" in e.key and e.value == 3
    assert "sed" in str(e) and "seed" in str(e)


def test_unknown_nested_key_with_did_you_mean():
    e = config_error({"federation": {"round": 3}})
    assert e.key.endswith("federation.round")
    assert "did you mean 'rounds'" in str(e)
    assert "got 3" in str(e)


@pytest.mark.parametrize(
    ("data", "key", "shown"),
    [
        ({"federation": {"rounds": "ten"}}, "federation.rounds", "'ten'"),
        ({"seed": 1.5}, "seed", "1.5"),
        ({"zo": {"eps": "small"}}, "zo.eps", "'small'"),
        ({"federation": {"clients_per_round": "all"}}, "federation.clients_per_round", "'all'"),
        ({"federation": 5}, "federation", "5"),
        ({"zo": {"mode": "fats"}}, "zo.mode", "'fats'"),
        ({"task": {"eval_split": "train"}}, "task.eval_split", "'train'"),
    ],
)
def test_wrong_type_names_key_and_value(data, key, shown):
    e = config_error(data)
    assert e.key.endswith(key), e.key
    assert key in str(e) and shown in str(e)


@pytest.mark.parametrize(
    ("data", "key", "shown"),
    [
        ({"federation": {"rounds": -1}}, "federation.rounds", "-1"),
        ({"federation": {"batch_size": 0}}, "federation.batch_size", "0"),
        ({"zo": {"eps": -0.001}}, "zo.eps", "-0.001"),
        ({"partition": {"num_clients": -3}}, "partition.num_clients", "-3"),
        ({"partition": {"alpha": -0.5}}, "partition.alpha", "-0.5"),
        ({"partition": {"min_size": -1}}, "partition.min_size", "-1"),
        ({"task": {"eval_max_examples": -2}}, "task.eval_max_examples", "-2"),
        ({"threads": 0}, "threads", "0"),
    ],
)
def test_out_of_range_names_key_and_value(data, key, shown):
    e = config_error(data)
    assert e.key.endswith(key), e.key
    assert key in str(e) and shown in str(e)


def test_yaml_style_float_strings_are_accepted():
    assert RunConfig.from_dict({"zo": {"eps": "1e-3"}}).zo.eps == 1e-3


def test_unknown_method_name():
    e = config_error({"method": {"name": "feedsgn"}})
    assert e.key == "method.name" and e.value == "feedsgn"
    assert "did you mean 'feedsign'" in str(e)
    for name in METHODS.names():
        assert name in str(e)


@pytest.mark.parametrize("method", METHODS.names())
def test_unknown_method_param(method):
    e = config_error({"method": {"name": method, "params": {"learning_rate": 0.1}}})
    assert e.key == "method.params.learning_rate" and e.value == 0.1
    assert "learning_rate" in str(e)


def test_invalid_method_param_value():
    e = config_error({"method": {"name": "feedsign", "params": {"lr": -1}}})
    assert e.key == "method.params.lr" and "-1" in str(e)
    e = config_error({"method": {"name": "feedsign", "params": {"tie": "pos"}}})
    assert e.key == "method.params.tie" and "did you mean 'positive'" in str(e)


def test_unknown_partition_name_raises_at_lookup():
    with pytest.raises(ConfigError) as e:
        PARTITIONERS.get("dirichlett", "partition.name")
    assert e.value.key == "partition.name" and "did you mean 'dirichlet'" in str(e.value)


def test_unknown_task_name_raises_at_lookup():
    with pytest.raises(ConfigError) as e:
        TASKS.get("bbc-new", "task.name")
    assert e.value.key == "task.name" and "did you mean 'bbc-news'" in str(e.value)


def test_unknown_packaged_model_name():
    with pytest.raises(ConfigError) as e:
        load_model(ModelConfig(name="tiny-lama"))
    assert e.value.key == "model.name" and e.value.value == "tiny-lama"
    assert "did you mean 'tiny-llama'" in str(e.value)
    for name in PACKAGED:
        assert name in str(e.value)


def test_config_errors_are_zofo_errors():
    assert issubclass(ConfigError, ZofoError)


# ---- CLI ---------------------------------------------------------------------------------------------


def write_yaml(tmp_path, data, name="run.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def run_cli(capsys, argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def test_cli_bad_config_file_exits_2_naming_the_key(tmp_path, capsys):
    path = write_yaml(tmp_path, {"federation": {"rouds": 3}})
    code, err = run_cli(capsys, ["run", path, "--out", tmp_path / "out", "--quiet"])
    assert code == 2
    assert "federation.rouds" in err and "rounds" in err
    assert not (tmp_path / "out").exists(), "a bad config must fail before any run folder is written"


def test_cli_bad_value_exits_2_naming_the_key(tmp_path, capsys):
    path = write_yaml(tmp_path, {"method": {"name": "feedsign", "params": {"lr": -0.1}}})
    code, err = run_cli(capsys, ["run", path, "--out", tmp_path / "out", "--quiet"])
    assert code == 2 and "method.params.lr" in err


def test_cli_unparseable_yaml_exits_2(tmp_path, capsys):
    path = write_yaml(tmp_path, "federation: {rounds: [1\n")
    code, err = run_cli(capsys, ["run", path, "--out", tmp_path / "out", "--quiet"])
    assert code == 2
    assert str(path) in err or "config" in err


def test_cli_missing_config_file_exits_2(tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    code, err = run_cli(capsys, ["run", missing, "--out", tmp_path / "out", "--quiet"])
    assert code == 2
    assert "config" in err and "nope.yaml" in err


@pytest.mark.parametrize(
    ("assignment", "shown"),
    [
        ("federation.rounds", "--set"),  # no '='
        ("=3", "--set"),  # no key
        ("federation.rounds=ten", "federation.rounds"),  # wrong type
        ("federation.roundz=3", "federation.roundz"),  # unknown key
        ("seed.sub=1", "seed"),  # a path through a non-mapping
        ("method.params.lr=-1", "method.params.lr"),
    ],
)
def test_cli_bad_set_exits_2_naming_the_key(tmp_path, capsys, assignment, shown):
    path = write_yaml(tmp_path, {"seed": 0, "method": {"name": "feedsign"}})
    code, err = run_cli(capsys, ["run", path, "--out", tmp_path / "out", "--quiet", "--set", assignment])
    assert code == 2, err
    assert shown in err


def test_cli_unparseable_set_value_exits_2(tmp_path, capsys):
    path = write_yaml(tmp_path, {"seed": 0})
    code, err = run_cli(capsys, ["run", path, "--out", tmp_path / "out", "--quiet", "--set", "seed=[1"])
    assert code == 2
    assert "seed" in err


def test_cli_list_prints_every_registered_name(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    names = [*METHODS.names(), *TASKS.names(), *PARTITIONERS.names(), *PACKAGED]
    assert names
    lines = out.splitlines()
    for name in names:
        assert any(line.split() and line.split()[0] == name for line in lines), f"{name} missing from list"


def test_an_attack_without_attackers_is_no_attack():
    # Fraction 0 runs no Byzantine client, so the attack it names changes nothing: the config says so,
    # and the run is the honest run (same resolved config, same hash) that other studies declare.
    honest = RunConfig.from_dict({"method": {"name": "fedavg"}})
    named = RunConfig.from_dict(
        {"method": {"name": "fedavg"}, "byzantine": {"fraction": 0.0, "attack": "gaussian", "strength": 100}}
    )
    assert named.byzantine.attack == "none" and named.byzantine.strength == 1.0
    assert named.to_dict() == honest.to_dict() and named.hash() == honest.hash()
    attacked = RunConfig.from_dict(
        {"method": {"name": "fedavg"}, "byzantine": {"fraction": 0.2, "attack": "gaussian", "strength": 100}}
    )
    assert attacked.byzantine.attack == "gaussian" and attacked.byzantine.strength == 100
    # A misspelt attack is still named, though no client would run it.
    with pytest.raises(ConfigError, match="byzantine.attack.*gausian.*gaussian"):
        RunConfig.from_dict(
            {"method": {"name": "fedavg"}, "byzantine": {"fraction": 0.0, "attack": "gausian"}}
        )
