"""Hostile input: every value a config cannot mean is refused with a message that names the key and the
value, before anything is written (and without touching a run that is already there). Also: a number
means the same value however it is spelled, and a run's hash holds exactly what changes its numbers."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import tiny_run_config

from zofo.cli import main
from zofo.core.config import RunConfig
from zofo.core.errors import ConfigError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def write(tmp_path: Path, data: dict | str, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def cli_error(capsys, tmp_path: Path, config: Path, *extra: str, out: str | None = None) -> str:
    """Run ``zofo run`` and return its error line; asserts exit code 2 and that --out stayed unwritten."""
    target = str(tmp_path / "out") if out is None else out
    before = _listing(Path(target)) if target.strip() else None
    code = main(["run", str(config), "--out", target, "--quiet", *extra])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    if target.strip():
        assert _listing(Path(target)) == before, "a refused run must leave --out as it was"
    return err


@pytest.fixture
def config_time(monkeypatch):
    """For inputs that must be refused before anything loads: a run that starts fails the test at once
    (rather than running a whole default experiment until the timeout)."""
    import zofo.engine.loop

    def started(*args, **kwargs):
        raise AssertionError("the run started: the input was not refused from the config alone")

    monkeypatch.setattr(zofo.engine.loop, "run", started)


def tiny_with(snippet: str) -> str:
    """A tiny run's YAML whose top-level sections named in ``snippet`` are the snippet's text, which
    comes first (its line numbers are the file's)."""
    data = tiny_run_config("feedsign")
    for key in yaml.safe_load(snippet):
        data.pop(key, None)
    return snippet + "\n" + yaml.safe_dump(data)


def _listing(path: Path) -> dict[str, bytes] | None:
    if not path.exists():
        return None
    if path.is_file():
        return {"": path.read_bytes()}
    return {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()}


def refused(data: dict) -> ConfigError:
    with pytest.raises(ConfigError) as e:
        RunConfig.from_dict(data)
    return e.value


# ---- numbers that are no setting: NaN and infinity, in every section and in a method's Params --------


@pytest.mark.parametrize(
    ("yaml_text", "key", "shown"),
    [
        ("method: {name: feedsign, params: {lr: .nan}}", "method.params.lr", "nan"),
        ("method: {name: fedavg, params: {lr: .inf}}", "method.params.lr", "inf"),
        ("method: {name: fedavg, params: {lr: -.inf}}", "method.params.lr", "-inf"),
        ("method: {name: feedsign, params: {lr: 'NaN'}}", "method.params.lr", "'NaN'"),
        ("method: {name: fedkseed-pro, params: {score_clip: .inf}}", "method.params.score_clip", "inf"),
        ("zo: {eps: .nan}", "zo.eps", "nan"),
        ("partition: {alpha: .inf}", "partition.alpha", "inf"),
        ("byzantine: {fraction: 0.4, attack: scaled, strength: .inf}", "byzantine.strength", "inf"),
        ("byzantine: {fraction: .nan, attack: scaled}", "byzantine.fraction", "nan"),
        ("aggregator: {name: median, trim: .nan}", "aggregator.trim", "nan"),
    ],
)
def test_nan_and_infinity_are_refused_for_every_number(tmp_path, capsys, config_time, yaml_text, key, shown):
    err = cli_error(capsys, tmp_path, write(tmp_path, tiny_with(yaml_text)))
    assert f"{key}: got {shown}" in err and "finite" in err


def test_a_string_where_a_number_is_required_is_refused():
    e = refused({"method": {"name": "feedsign", "params": {"lr": "fast"}}})
    assert (e.key, e.value) == ("method.params.lr", "fast") and "a number" in str(e)
    e = refused({"method": {"name": "fedkseed", "params": {"K": "4500.5"}}})
    assert (e.key, e.value) == ("method.params.K", "4500.5") and "an integer" in str(e)


@pytest.mark.parametrize("spelling", ["1e-3", "1.0e-3", "0.001", "1E-3", "'1e-3'"])
def test_a_number_means_one_value_however_spelled(tmp_path, spelling):
    # YAML 1.1 reads 1e-3 (no dot) as a string: the method's Params must read it as the number.
    text = f"method: {{name: feedsign, params: {{lr: {spelling}}}}}\nzo: {{eps: {spelling}}}\n"
    cfg = RunConfig.from_yaml(write(tmp_path, text))
    reference = RunConfig.from_dict(
        {"method": {"name": "feedsign", "params": {"lr": 0.001}}, "zo": {"eps": 0.001}}
    )
    assert cfg.method.params == {"lr": 0.001} and cfg.zo.eps == 0.001
    assert cfg.method_params().lr == 0.001
    assert cfg.hash() == reference.hash()
    # Integers too: 4e3, 4000.0 and 4000 are one K.
    hashes = {
        RunConfig.from_dict({"method": {"name": "fedkseed", "params": {"K": k}}}).hash()
        for k in ("4e3", 4000.0, 4000)
    }
    assert len(hashes) == 1


# ---- the file itself: empty, not a mapping, a key given twice ---------------------------------------


@pytest.mark.parametrize("text", ["", "# every key commented out\n# seed: 1\n", "null\n"])
def test_an_empty_config_file_is_refused(tmp_path, capsys, config_time, text):
    path = write(tmp_path, text)
    err = cli_error(capsys, tmp_path, path)
    assert "config file" in err and str(path) in err and "{}" in err


def test_a_config_that_is_not_a_mapping_is_refused(tmp_path, capsys, config_time):
    err = cli_error(capsys, tmp_path, write(tmp_path, "- seed: 1\n"))
    assert "config file" in err and "mapping" in err and "list" in err


def test_a_duplicate_top_level_key_names_the_key_and_both_lines(tmp_path, capsys, config_time):
    err = cli_error(capsys, tmp_path, write(tmp_path, tiny_with("seed: 1\nthreads: 1\nseed: 2")))
    assert "seed: got '2'" in err and "line 1" in err and "line 3" in err


def test_a_duplicate_nested_key_names_its_dotted_path(tmp_path, capsys, config_time):
    text = "method:\n  name: feedsign\n  params:\n    lr: 1.0e-3\n    lr: 1.0e-4\n"
    err = cli_error(capsys, tmp_path, write(tmp_path, tiny_with(text)))
    assert "method.params.lr: got '1.0e-4'" in err and "line 4" in err and "line 5" in err


def test_a_duplicate_key_inside_a_set_value_is_refused(tmp_path, capsys, config_time):
    path = write(tmp_path, tiny_run_config("feedsign"))
    err = cli_error(capsys, tmp_path, path, "--set", "method.params={lr: 1.0e-3, lr: 2.0e-3}")
    assert "method.params.lr" in err and "2.0e-3" in err


# ---- --out: where a run may write --------------------------------------------------------------------


def test_an_empty_out_is_refused(tmp_path, capsys, config_time, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, tiny_run_config("feedsign"))
    before = sorted(os.listdir(tmp_path))
    err = cli_error(capsys, tmp_path, path, out="")
    assert "--out: got ''" in err
    assert sorted(os.listdir(tmp_path)) == before, "nothing may land in the current folder"


@pytest.mark.parametrize("out", [".", "./", "sub/.."])
def test_the_current_folder_as_out_is_refused(tmp_path, capsys, config_time, monkeypatch, out):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    path = write(tmp_path, tiny_run_config("feedsign"))
    before = sorted(os.listdir(tmp_path))
    err = cli_error(capsys, tmp_path, path, out=out)
    assert f"--out: got {out!r}" in err and "current folder" in err
    assert sorted(os.listdir(tmp_path)) == before


def test_an_existing_file_as_out_is_refused(tmp_path, capsys, config_time):
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    err = cli_error(capsys, tmp_path, write(tmp_path, tiny_run_config("feedsign")), out=str(target))
    assert f"--out: got {str(target)!r}" in err and "existing file" in err
    assert target.read_text() == "keep me"


def test_an_out_below_a_file_is_refused(tmp_path, capsys, config_time):
    (tmp_path / "notes.txt").write_text("keep me")
    out = str(tmp_path / "notes.txt" / "run")
    err = cli_error(capsys, tmp_path, write(tmp_path, tiny_run_config("feedsign")), out=out)
    assert f"--out: got {out!r}" in err and "is a file" in err


def test_an_out_nobody_can_write_is_refused(tmp_path, capsys, config_time):
    # /proc takes no new file, whoever asks (root included, unlike a chmod-ed folder).
    err = cli_error(capsys, tmp_path, write(tmp_path, tiny_run_config("feedsign")), out="/proc/zofo-run")
    assert "--out: got '/proc/zofo-run'" in err and "can write" in err
    assert not Path("/proc/zofo-run").exists()


def test_an_out_folder_with_other_files_is_refused(tmp_path, capsys, config_time):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "thesis.tex").write_text("keep me")
    err = cli_error(capsys, tmp_path, write(tmp_path, tiny_run_config("feedsign")), out=str(folder))
    assert f"--out: got {str(folder)!r}" in err and "thesis.tex" in err


def test_an_out_holding_another_configs_finished_run_is_refused(tmp_path, capsys):
    folder = tmp_path / "done"
    folder.mkdir()
    (folder / "meta.json").write_text(json.dumps({"config_hash": "0123456789abcdef", "status": "finished"}))
    (folder / "rounds.jsonl").write_text('{"round": 0, "metric": 0.5}\n')
    err = cli_error(capsys, tmp_path, write(tmp_path, tiny_run_config("feedsign")), out=str(folder))
    # the engine's folder guard refuses it, naming the folder and the run it holds; both files kept
    assert str(folder) in err and "0123456789abcdef" in err and "--restart" in err


# ---- values checkable from the config alone ----------------------------------------------------------


@pytest.mark.parametrize("seed", [2**64, 2**63, -1])
def test_a_seed_no_generator_takes_is_refused_at_config_time(tmp_path, capsys, config_time, seed):
    err = cli_error(capsys, tmp_path, write(tmp_path, tiny_run_config("feedsign", seed=seed)))
    assert f"seed: got {seed}" in err and str(2**63 - 1) in err


def test_the_largest_allowed_seed_runs_through_every_generator():
    # The bound is what torch, numpy and philox all take: tiny models draw their weights from the raw seed.
    from zofo.assets.models import load_model
    from zofo.core import philox

    cfg = RunConfig.from_dict(tiny_run_config("feedsign", seed=2**63 - 1))
    load_model(cfg.model, seed=cfg.seed)
    np.random.default_rng(cfg.seed)
    assert philox.key_of(cfg.seed) == (2**32 - 1, 2**31 - 1)


def test_more_clients_per_round_than_clients_is_refused_at_config_time():
    e = refused(tiny_run_config("fedavg", federation={"clients_per_round": 4}))
    assert (e.key, e.value) == ("federation.clients_per_round", 4) and "3" in e.allowed


def test_a_byzantine_fraction_that_rounds_to_every_client_is_refused_at_config_time():
    # 0.9 of 3 clients rounds (half up) to 3: no honest client would be left.
    e = refused(tiny_run_config("fedavg", byzantine={"fraction": 0.9, "attack": "scaled"}))
    assert (e.key, e.value) == ("byzantine.fraction", 0.9) and "3 clients" in e.allowed


def test_a_missing_local_model_folder_is_refused(tmp_path, capsys, config_time):
    missing = str(tmp_path / "models" / "mine")
    err = cli_error(capsys, tmp_path, write(tmp_path, tiny_run_config("feedsign", model={"name": missing})))
    assert f"model.name: got {missing!r}" in err and "nothing is at this path" in err


def test_an_empty_local_model_folder_is_refused(tmp_path, capsys, config_time):
    empty = tmp_path / "empty-model"
    empty.mkdir()
    err = cli_error(
        capsys, tmp_path, write(tmp_path, tiny_run_config("feedsign", model={"name": str(empty)}))
    )
    assert f"model.name: got {str(empty)!r}" in err and "config.json" in err


def test_a_model_folder_transformers_cannot_read_is_refused_when_loaded(tmp_path):
    from zofo.assets.models import load_model
    from zofo.core.config import ModelConfig

    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.json").write_text("{}")  # no model_type: transformers raises ValueError
    with pytest.raises(ConfigError) as e:
        load_model(ModelConfig(name=str(folder)))
    assert (e.value.key, e.value.value) == ("model.name", str(folder))


# ---- values that need the model or the data: refused while preparing, before the run folder exists ---


def test_a_token_budget_beyond_the_models_positions_is_refused(tmp_path, capsys):
    # tiny-bert has 256 absolute positions: 300 input tokens plus [CLS] and [SEP] do not fit.
    data = tiny_run_config("feedsign", model={"name": "tiny-bert"}, task={"max_input_tokens": 300})
    err = cli_error(capsys, tmp_path, write(tmp_path, data))
    assert "task.max_input_tokens: got 300" in err and "256 positions" in err and "at most 254" in err


def test_a_batch_larger_than_a_clients_data_is_refused(tmp_path, capsys):
    data = tiny_run_config("feedsign", federation={"batch_size": 5000})
    err = cli_error(capsys, tmp_path, write(tmp_path, data))
    assert "federation.batch_size: got 5000" in err and "smallest client" in err


def labelled_folder(tmp_path: Path, bad_label: int) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    with open(folder / "train.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(90):
            w.writerow([f"example {i} about topic {i % 3}", bad_label if i == 7 else i % 3])
    return folder


def test_an_unlabelled_row_is_refused(tmp_path, capsys):
    # -1 is how datasets mark a row without a label (GLUE's test splits): it would index the last class.
    folder = labelled_folder(tmp_path, -1)
    data = tiny_run_config("feedsign", task={"name": "hub-classification", "dataset": str(folder)})
    err = cli_error(capsys, tmp_path, write(tmp_path, data))
    assert "task.label_column: got -1" in err and "unlabelled" in err


# ---- identity: the hash holds what changes a run's numbers, and nothing else -------------------------


def test_where_assets_live_and_whether_checkpoints_are_written_leave_the_hash_alone():
    base = RunConfig.from_dict(tiny_run_config("feedsign"))
    moved = RunConfig.from_dict(tiny_run_config("feedsign", assets_dir="/elsewhere", checkpoint=False))
    assert moved.hash() == base.hash()
    # The torch thread count changes the last bits of a run's losses (measured), so it stays in.
    assert RunConfig.from_dict(tiny_run_config("feedsign", threads=2)).hash() != base.hash()


def test_tiny_bert_gives_one_model_and_head_per_seed():
    # Two builds in one process see different global generator states: the head must not depend on them.
    from zofo.assets.models import load_model
    from zofo.assets.objectives import build_objective
    from zofo.core.config import ModelConfig, TaskConfig
    from zofo.core.registry import TASKS

    task_cfg = TaskConfig(name="bbc-news", max_input_tokens=8)
    task = TASKS.get("bbc-news")(task_cfg)
    heads = [
        build_objective(load_model(ModelConfig(name="tiny-bert"), seed=0), task, task_cfg).model.head.weight
        for _ in range(2)
    ]
    assert heads[0].equal(heads[1])
