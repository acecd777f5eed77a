"""`zofo bench`: its outputs, rows and option errors, and the MeZO-style reference step it times.

No timing is ever asserted: only that every measure is there with a positive finite value and ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import ZO_RESTORE_ATOL, load_tiny_llama, unique_trainable

from zofo import bench
from zofo.cli import main
from zofo.errors import ConfigError

# (measure, ratio_of) rows --quick must write ("" = a row without a ratio), per model and shape.
STEP_ROWS = {
    ("forward_pair", ""),
    ("zo_step_lean", "forward_pair"),
    ("zo_step_fast", "forward_pair"),
    ("mezo_reference_step", "forward_pair"),
    ("mezo_reference_step", "zo_step_lean"),
    ("mezo_reference_step", "zo_step_fast"),
    ("feedsign_client_shared", "forward_pair"),
    ("feedsign_client_fresh", "forward_pair"),
    ("feedsign_client_fresh", "feedsign_client_shared"),
    ("fedkseed_incremental", ""),
    ("fedkseed_rebuild", "fedkseed_incremental"),
}
SCALING_ROWS = {
    ("scaling_feedsign_shared", "forward_pair"),
    ("scaling_feedsign_fresh", "forward_pair"),
    ("scaling_feedsign_fresh", "scaling_feedsign_shared"),
}
GROWTH_ROWS = {("growth_forward_pair", ""), ("growth_zo_step_fast", "growth_forward_pair")}
MEMORY_MEASURES = ("peak_rss_inference", "peak_rss_zo_lean", "peak_rss_zo_fast", "peak_rss_fo_adamw")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One `zofo bench --quick` through the CLI, shared by the tests that read its outputs."""
    tmp = tmp_path_factory.mktemp("bench")
    threads, rng_state = torch.get_num_threads(), torch.random.get_rng_state()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["bench", "--quick", "--out", str(tmp / "results"), "--figures", str(tmp / "figures")])
    return {
        "code": code,
        "stdout": out.getvalue(),
        "dir": tmp,
        "threads_after": torch.get_num_threads(),
        "threads_before": threads,
        "rng_unchanged": torch.equal(torch.random.get_rng_state(), rng_state),
    }


def read_rows(run: dict) -> pd.DataFrame:
    return pd.read_csv(run["dir"] / "results" / "bench.csv", keep_default_na=False, na_values=[""])


def test_quick_cli_writes_csv_markdown_and_figure(quick_run):
    assert quick_run["code"] == 0
    d: Path = quick_run["dir"]
    md = (d / "results" / "bench.md").read_text()
    assert quick_run["stdout"] == md  # the summary printed is the one written
    assert md.startswith("# zofo bench") and "random-init" in md.lower()
    for ext in ("png", "pdf"):
        assert (d / "figures" / f"scaling.{ext}").stat().st_size > 5000
    assert list(read_rows(quick_run).columns) == list(bench.CSV_COLUMNS)


def test_quick_run_leaves_threads_and_global_rng_alone(quick_run):
    assert quick_run["threads_after"] == quick_run["threads_before"]
    assert quick_run["rng_unchanged"]


def test_every_expected_measure_and_ratio_is_there(quick_run):
    rows = read_rows(quick_run)
    rows["ratio_of"] = rows["ratio_of"].fillna("")
    got = set(zip(rows["measure"], rows["ratio_of"], strict=True))
    assert STEP_ROWS | SCALING_ROWS | GROWTH_ROWS == got
    # the FeedSign scaling series has every client count, the growth series every width
    scaling = rows[rows["measure"].str.startswith("scaling_")]
    assert sorted(set(scaling["clients"].astype(int))) == sorted(bench.QUICK.scaling_clients)
    growth = rows[rows["measure"] == "growth_forward_pair"]
    assert list(growth["model"]) == [f"rand-llama-h{h}" for h in bench.QUICK.growth_hidden]
    assert growth["params"].is_monotonic_increasing
    # one row per (model, shape, clients, measure, ratio_of): nothing measured twice
    key = ["model", "shape", "clients", "measure", "ratio_of"]
    assert not rows[key].astype(str).duplicated().any()


def test_seconds_and_ratios_are_positive_and_finite(quick_run):
    rows = read_rows(quick_run)
    assert ((rows["seconds"] > 0) & rows["seconds"].map(math.isfinite)).all()
    with_ratio = rows[rows["ratio_of"].notna()]
    assert len(with_ratio) > 0
    assert ((with_ratio["ratio"] > 0) & with_ratio["ratio"].map(math.isfinite)).all()
    assert rows[rows["ratio_of"].isna()]["ratio"].isna().all()
    assert (rows["threads"] == bench.QUICK.threads).all()


def test_regeneration_counts_in_the_notes(quick_run):
    """Counted, not timed: lean regenerates z three times a step (the restore folded into the update),
    fast once; FeedSign's shared z once per
    step whatever the number of clients, fresh z once per client."""
    rows = read_rows(quick_run)

    def note(measure: str, clients: int | None = None) -> str:
        sel = rows[rows["measure"] == measure]
        if clients is not None:
            sel = sel[sel["clients"] == clients]
        return sel["note"].iloc[0]

    assert "z regenerations per step: 3" in note("zo_step_lean")
    assert "z regenerations per step: 1" in note("zo_step_fast")
    n = bench.QUICK.clients
    assert "z regenerations per step: 1;" in note("feedsign_client_shared", n)
    assert f"z regenerations per step: {n};" in note("feedsign_client_fresh", n)


def test_mezo_reference_step_moves_by_minus_lr_g_z_and_restores_the_global_rng():
    """The reference step's own z is the global generator's after torch.manual_seed(seed), one draw per
    parameter in order, regenerated here independently; the weights must end at w - lr * g * z (to the
    restore rounding) and g must be the two-point difference along that z."""
    model = load_tiny_llama().model.eval()
    params = unique_trainable(model)
    ids = torch.tensor([[101, 2023, 2003, 1037, 3231, 102]])

    def loss() -> torch.Tensor:
        return model(input_ids=ids, labels=ids).loss

    seed, eps, lr = 1234, 1e-3, 1e-2
    before = [p.detach().clone() for p in params]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        z = [torch.randn(p.shape, dtype=p.dtype) for p in params]
    with torch.no_grad():
        for p, w, zi in zip(params, before, z, strict=True):
            p.copy_(w + eps * zi)
        l_plus = float(loss())
        for p, w, zi in zip(params, before, z, strict=True):
            p.copy_(w - eps * zi)
        l_minus = float(loss())
        for p, w in zip(params, before, strict=True):
            p.copy_(w)

    torch.manual_seed(99)  # any state: it must come back unchanged
    state = torch.random.get_rng_state()
    g = bench.mezo_reference_step(params, loss, seed, eps=eps, lr=lr)
    assert torch.equal(torch.random.get_rng_state(), state)

    assert g == pytest.approx((l_plus - l_minus) / (2 * eps), rel=1e-2, abs=1e-3)
    step = max(float((lr * g * zi).abs().max()) for zi in z)
    assert step > 100 * ZO_RESTORE_ATOL  # the update is far above the tolerance: a wrong one shows
    for p, w, zi in zip(params, before, z, strict=True):
        torch.testing.assert_close(p.detach(), w - lr * g * zi, rtol=0.0, atol=ZO_RESTORE_ATOL)


def test_memory_child_reports_a_peak():
    """One real child process (the path `zofo bench` uses for every memory kind)."""
    out = bench.run_child("inference", "tiny-llama", (1, 8), bench.QUICK)
    # an interpreter with torch loaded is far above 50 MB; the peak includes the peak after loading
    assert math.isfinite(out["peak_rss_mb"]) and out["peak_rss_mb"] >= out["loaded_rss_mb"] > 50


@pytest.mark.parametrize("kind", bench.MEMORY_KINDS)
def test_every_memory_kind_runs(kind):
    """The child's work for each kind, run in this process (its peak here is pytest's, not asserted on)."""
    out = bench.child_run(kind, "tiny-llama", (1, 8), threads=torch.get_num_threads(), seed=0, assets_dir=".")
    assert out["kind"] == kind and out["params"] > 0 and out["peak_rss_mb"] > 0


def parse(argv: list[str]) -> bench.BenchOptions:
    p = argparse.ArgumentParser()
    bench.add_arguments(p)
    return bench.options_from_args(p.parse_args(argv))


@pytest.mark.parametrize(
    ("argv", "key"),
    [
        (["--models", "tiny-lama"], "--models"),
        (["--models", "rand-llama-h40"], "--models"),
        (["--models", "tiny-llama,tiny-llama"], "--models"),
        (["--shapes", "16by64"], "--shapes"),
        (["--shapes", "0x8"], "--shapes"),
        (["--threads", "two"], "--threads"),
        (["--threads", "0"], "--threads"),
        (["--repeats", "0"], "--repeats"),
        (["--clients", "-1"], "--clients"),
        (["--scaling-clients", "1,x"], "--scaling-clients"),
        (["--scaling-clients", "0,2"], "--scaling-clients"),
        (["--growth-hidden", "48"], "--growth-hidden"),
        (["--fedkseed-k", "0"], "--fedkseed-k"),
        (["--fedkseed-tau", "0"], "--fedkseed-tau"),
        (["--fedkseed-rounds", "1.5"], "--fedkseed-rounds"),
        (["--fedkseed-repeats", "0"], "--fedkseed-repeats"),
        (["--seed", "-3"], "--seed"),
    ],
)
def test_bad_option_raises_config_error_naming_it(argv, key):
    with pytest.raises(ConfigError) as e:
        parse(argv)
    assert e.value.key == key


def test_quick_is_the_base_and_explicit_options_win():
    opts = parse(["--quick", "--repeats", "3", "--memory"])
    assert opts.models == ("tiny-llama",) and opts.repeats == 3 and opts.memory
    assert parse([]) == bench.BenchOptions()
    assert bench.BenchOptions().models == ("smollm2-135m", "minilm-l6", "rand-llama-h256")


def test_cli_bad_option_exits_2_naming_it(capsys, tmp_path):
    code = main(["bench", "--quick", "--shapes", "1x8x2", "--out", str(tmp_path), "--figures", str(tmp_path)])
    assert code == 2
    assert "--shapes" in capsys.readouterr().err
    assert not (tmp_path / "bench.csv").exists()


def test_shape_longer_than_the_model_takes_is_refused():
    lm = bench.load_bench_model("tiny-llama", 0, "resources")
    with pytest.raises(ConfigError) as e:
        bench.make_batch(lm, (1, lm.max_tokens + 1), seed=0)
    assert e.value.key == "--shapes"


def test_goals_table_judges_each_target_from_its_own_ratio():
    row = {"model": bench.GOAL_MODEL, "params": 1, "clients": None, "seconds": 1.0, "rss_mb": math.nan}
    df = pd.DataFrame(
        [
            {**row, "shape": "16x64", "measure": "zo_step_lean", "ratio_of": "forward_pair", "ratio": 1.7},
            {**row, "shape": "16x64", "measure": "zo_step_fast", "ratio_of": "forward_pair", "ratio": 1.3},
            {
                **row,
                "shape": "-",
                "measure": "fedkseed_rebuild",
                "ratio_of": "fedkseed_incremental",
                "ratio": 2.0,
            },
            # another model's ratio must not count for the goal model
            {
                **row,
                "model": "other",
                "shape": "1x64",
                "measure": "mezo_reference_step",
                "ratio_of": "zo_step_fast",
                "ratio": 9.0,
            },
        ]
    )
    goals = bench.goals_table(df).set_index(["goal", "shape"])["met"]
    assert goals[("lean ZO step / floor", "16x64")] == "yes"  # 1.7 <= 1.75
    assert goals[("fast ZO step / floor", "16x64")] == "no"  # 1.3 > 1.25
    assert goals[("FedKSeed server: rebuild / incremental", "-")] == "yes"  # >= 2 inclusive
    assert goals[("MeZO-style reference / fast step", "1x64")] == "not measured"
