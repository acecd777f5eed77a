"""`zofo bench`: its outputs, rows and option errors, the MeZO-style reference step it times, the OPT
shapes of its sizes section, and the drift section's simulation (the wave model's server directions,
the parties' replay).

No timing is ever asserted: only that every measure is there with a positive finite value and ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import ZO_RESTORE_ATOL, load_tiny_llama, unique_trainable

from zofo import bench
from zofo.cli import main
from zofo.core.errors import ConfigError

# (measure, ratio_of) rows --quick must write ("" = a row without a ratio), per model and shape.
STEP_ROWS = {
    ("forward_pair", ""),
    ("zo_step_lean", "forward_pair"),
    ("zo_step_fast", "forward_pair"),
    ("zo_step_lean_philox", "forward_pair"),
    ("zo_step_lean_philox", "zo_step_lean"),
    ("zo_step_fast_philox", "forward_pair"),
    ("zo_step_fast_philox", "zo_step_fast"),
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
GENERATOR_ROWS = {
    ("copy", ""),
    ("gen_torch", "copy"),
    ("gen_philox", "copy"),
    ("gen_philox", "gen_torch"),
    ("gen_philox_torch_ops", "gen_philox"),
}
# The sizes section at --quick: OPT "tiny" on the CPU, no memory children.
SIZE_ROWS = {
    ("forward_pair", ""),
    *((f"zo_step_{mode}_{gen}", "forward_pair") for mode in ("lean", "fast") for gen in ("philox", "torch")),
    ("fedkseed_incremental", ""),
    ("fedkseed_rebuild", "fedkseed_incremental"),
}
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
    sizes = rows["model"] == "opt-tiny"
    gens = rows["model"] == "-"
    packaged = rows[~sizes & ~gens]

    def pairs(part: pd.DataFrame) -> set[tuple[str, str]]:
        return set(zip(part["measure"], part["ratio_of"], strict=True))

    assert STEP_ROWS | SCALING_ROWS | GROWTH_ROWS == pairs(packaged)
    assert GENERATOR_ROWS == pairs(rows[gens])
    assert SIZE_ROWS == pairs(rows[sizes])
    assert (rows["device"] == "cpu").all() and (rows["dtype"] == "float32").all()
    assert (rows[sizes]["params"] == bench.opt_parameters("tiny")).all()
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


@pytest.mark.parametrize("generator", ["torch", "philox"])
@pytest.mark.parametrize("kind", bench.MEMORY_KINDS)
def test_every_memory_kind_runs(kind, generator):
    """The child's work for each kind, run in this process (its peak here is pytest's, not asserted on)."""
    threads = torch.get_num_threads()
    out = bench.child_run(kind, "tiny-llama", (1, 8), threads, seed=0, assets_dir=".", generator=generator)
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
        (["--device", "gpu"], "--device"),
        (["--dtype", "fp8"], "--dtype"),
        (["--sizes", "7b"], "--sizes"),
        (["--sizes", "125m,125m"], "--sizes"),
        (["--sections", "packaged,speed"], "--sections"),
        (["--sections", "packaged", "--device", "cuda"], "--sections"),
        (["--generators", "mt19937"], "--generators"),
        (["--gen-numel", "0"], "--gen-numel"),
        (["--max-seconds", "0"], "--max-seconds"),
        (["--max-seconds", "soon"], "--max-seconds"),
        (["--drift-methods", "fedavg"], "--drift-methods"),
        (["--drift-model", "gpt2"], "--drift-model"),
        (["--drift-rounds", "0"], "--drift-rounds"),
        (["--drift", "--sections", "sizes"], "--drift"),
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


def test_defaults_follow_the_device():
    cpu, cuda = parse([]), parse(["--device", "cuda"])
    assert cpu.run_sections == ("packaged", "generators") and cpu.run_sizes == ()
    assert parse(["--sizes", "125m"]).run_sections == ("packaged", "generators", "sizes")
    assert cuda.run_sections == ("generators", "sizes") and cuda.torch_dtype == torch.bfloat16
    assert cuda.run_sizes == ("125m", "350m", "1.3b", "2.7b", "6.7b", "13b", "30b")
    assert parse(["--drift"]).run_sections == ("drift",)
    assert parse(["--device", "cuda", "--sizes", "none"]).run_sizes == ()


def test_cuda_where_there_is_none_exits_2_naming_the_device(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = main(["bench", "--quick", "--device", "cuda", "--out", str(tmp_path), "--figures", str(tmp_path)])
    assert code == 2
    assert "--device" in capsys.readouterr().err
    assert not (tmp_path / "bench.csv").exists()


@pytest.mark.parametrize(
    ("size", "params"),
    # the published OPT checkpoints' parameter counts (tied input and output embedding counted once)
    [("125m", 125_239_296), ("350m", 331_196_416), ("1.3b", 1_315_758_080), ("30b", 29_974_540_288)],
)
def test_sizes_have_the_opt_shapes(size, params):
    assert bench.opt_parameters(size) == params


def test_generator_rows_count_the_bytes_they_move(quick_run):
    rows = read_rows(quick_run)
    for measure, moved in (("copy", 2), ("gen_torch", 1), ("gen_philox", 1)):
        r = rows[rows["measure"] == measure].iloc[0]
        assert r["items"] == bench.QUICK.gen_numel
        assert r["gb_s"] == pytest.approx(moved * 4 * r["items"] / r["seconds"] / 1e9)
    vs_torch = rows[(rows["measure"] == "gen_philox") & (rows["ratio_of"] == "gen_torch")].iloc[0]
    t = rows[rows["measure"] == "gen_torch"].iloc[0]
    assert vs_torch["ratio"] == pytest.approx(t["seconds"] / vs_torch["seconds"])  # a ratio of rates


# ---- the drift section -------------------------------------------------------------------------------


def wave_params(wave: int) -> list[torch.Tensor]:
    """A short tensor, one longer than the wave (odd length), then short ones again."""
    return [torch.zeros(37), torch.zeros(wave + 4099), torch.zeros(3, 5), torch.zeros(16)]


def test_wave_model_keeps_the_stream_up_to_the_wave_and_shifts_everything_after():
    from zofo.bench.drift import WaveDirections
    from zofo.core.zo import SeededDirections

    wave = 1024
    params = wave_params(wave)
    stock = list(SeededDirections(params, 1e-3, "fast", generator="torch").z(5))
    server = WaveDirections(params, 1e-3, "torch", wave=wave).z(5)
    assert torch.equal(server[0], stock[0])
    assert torch.equal(server[1][:wave], stock[1][:wave])
    assert (server[1][wave:] != stock[1][wave:]).float().mean() > 0.99
    # the skipped wave stays skipped: later tensors come from another offset of the stream
    assert not torch.equal(server[2], stock[2]) and not torch.equal(server[3], stock[3])


def test_philox_is_the_same_whatever_the_launch_split():
    from zofo.bench.drift import WaveDirections
    from zofo.core.zo import SeededDirections

    params = wave_params(1024)
    stock = list(SeededDirections(params, 1e-3, "fast", generator="philox").z(5))
    server = WaveDirections(params, 1e-3, "philox", wave=1024).z(5)
    assert all(torch.equal(a, b) for a, b in zip(server, stock, strict=True))


def test_wave_server_update_moves_weights_along_its_own_z():
    from zofo.bench.drift import WaveDirections

    params = wave_params(1024)
    server = WaveDirections(params, 1e-3, "torch", wave=1024)
    server.update(9, 0.5)
    for p, z in zip(params, server.z(9), strict=True):
        assert torch.equal(p, -0.5 * z)


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """FeedSign's clients for 3 rounds on tiny-llama, then servers replaying them, in this process."""
    from dataclasses import replace

    from zofo.bench import drift

    tmp = tmp_path_factory.mktemp("drift")
    opts = replace(bench.QUICK, drift_methods=("feedsign",))
    party, out = drift.Party(), {}
    threads = torch.get_num_threads()
    for gen in ("torch", "philox"):
        config = drift.run_config(opts, "feedsign", gen)
        log = str(tmp / f"{gen}.pt")
        party.run(drift.PartyTask("clients", "feedsign", gen, "", config, log, str(tmp / f"{gen}-c.json")))
        for scenario in ("same", "wave"):
            path = tmp / f"{gen}-{scenario}.json"
            party.run(drift.PartyTask("server", "feedsign", gen, scenario, config, log, str(path)))
            out[gen, scenario] = json.loads(path.read_text())
    out["threads_kept"] = torch.get_num_threads() == threads
    return out


def test_server_replaying_on_the_same_hardware_holds_the_clients_weights_exactly(replay):
    for gen in ("torch", "philox"):
        r = replay[gen, "same"]
        assert r["broadcasts_equal"] and r["z_differ"] == 0 and r["max_abs_drift"] == 0.0
        assert r["rel_l2_drift"] == 0.0  # the clients did move: the ratio is defined and zero
    assert replay["threads_kept"]


def test_stock_generator_drifts_under_the_wave_model_and_philox_does_not(replay):
    torch_wave, philox_wave = replay["torch", "wave"], replay["philox", "wave"]
    assert torch_wave["broadcasts_equal"] and torch_wave["z_differ"] > 0.5
    assert torch_wave["max_abs_drift"] > 0 and torch_wave["rel_l2_drift"] > 0.1
    assert philox_wave["z_differ"] == 0 and philox_wave["max_abs_drift"] == 0.0
    # the server's model is the one evaluated: it reports its own accuracy at round 0 and at the end
    assert set(torch_wave["server_metrics"]) >= {"0", "3"}


def test_parties_on_different_instruction_sets_draw_different_stock_z_and_the_same_philox_z(tmp_path):
    """The isa scenario end to end: every party its own process, ATEN_CPU_CAPABILITY set per party."""
    from dataclasses import replace

    from zofo.bench import drift

    opts = replace(bench.QUICK, drift_methods=("feedsign",), drift_rounds=1, drift_jobs=2)
    df = drift.drift_frame(opts, tmp_path).set_index(["generator", "scenario"])
    assert (df["client_capability"] == "DEFAULT").all()
    assert df.loc[("torch", "isa"), "server_capability"] == "AVX2"
    assert df.loc[("torch", "isa"), "z_differ"] > 0.1  # ASSETS.md measured 38%
    assert df.loc[("torch", "isa"), "z_max_abs_diff"] < 1e-5  # last bits of fp32 log/cos, not other draws
    assert (df.xs("philox", level="generator")["z_differ"] == 0).all()
    # and with the same z the portable update leaves the parties' weights bitwise equal
    assert (df.xs("philox", level="generator")["max_abs_drift"] == 0).all()
    assert (df.xs("same", level="scenario")["max_abs_drift"] == 0).all()
    assert df["broadcasts_equal"].all()


def test_a_budget_times_fewer_calls_but_at_least_one(monkeypatch):
    """Each call "takes" 4 s (a stand-in clock): a 10 s budget leaves 2 of 5 repeats, a 1 s one still 1."""
    from zofo.bench import common

    monkeypatch.setattr(common.Timer, "__call__", lambda self, fn: (fn(), 4.0)[1])
    calls: list[int] = []
    assert common.median_time(calls.append, repeats=5, budget=10.0) == (4.0, 2)
    assert calls == [-1, 0, 1]  # the warm-up, then two timed calls with new indices
    assert common.median_time(calls.append, repeats=5, budget=1.0) == (4.0, 1)
    assert common.median_time(calls.append, repeats=5) == (4.0, 5)


def test_the_bench_times_the_methods_own_code() -> None:
    """The steps the bench times are the methods' own: its ZO step is a FedKSeed client's local step, and
    its FeedSign rounds and FedKSeed server are instances of the registered classes (a copy of a step
    in the bench could drift from the method it claims to measure)."""
    from zofo.bench import fed
    from zofo.core.registry import METHODS
    from zofo.methods import fedkseed

    assert fed.zo_sgd_step is fedkseed.zo_sgd_step
    model = load_tiny_llama().model
    params = unique_trainable(model)
    before = [p.detach().clone() for p in params]
    dirs = fed.directions(params, "fast", "torch")

    def loss() -> torch.Tensor:
        return sum((p.float() ** 2).sum() for p in params)

    g = fed.zo_step(dirs, 7, loss, lr=1e-2)
    moved = [p.detach().clone() for p in params]
    # The same step taken by the method's function from the same weights lands on the same weights.
    with torch.no_grad():
        for p, b in zip(params, before, strict=True):
            p.copy_(b)
    assert fedkseed.zo_sgd_step(fed.directions(params, "fast", "torch"), 7, loss, 1e-2) == g
    assert all(torch.equal(p, m) for p, m in zip(params, moved, strict=True))
    assert METHODS.get("fedkseed") is fed.FedKSeed and METHODS.get("feedsign") is fed.FeedSign
