"""`zofo bench` sections startup, dag and throughput (zofo.bench.pipeline): the profile attribution on a
hand-built table and on a real profile, the baseline export and its refusals, the interleaving and the
ratio rows, the options, and one tiny run of the three sections through the CLI.

No timing is asserted: only that each measure is there, positive and finite, with the columns it
should have.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import math
import pstats
import subprocess
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from conftest import load_tiny_llama

from zofo import bench
from zofo.bench import pipeline
from zofo.bench.common import Rows
from zofo.bench.pipeline import (
    BASELINE,
    CURRENT,
    BaselineError,
    MeasureFailed,
    Pipeline,
    Samples,
    Tree,
    build_baseline,
    interleaved,
    make_trees,
    split_profile,
)
from zofo.cli import main
from zofo.core.errors import ConfigError

# -- the profile attribution -------------------------------------------------------------------------

MODULE = "/env/site-packages/torch/nn/modules/module.py"
BERT = "/env/site-packages/transformers/models/bert/modeling_bert.py"
OBJECTIVE = "/repo/src/zofo/assets/objectives/classification.py"
ZO = "/repo/src/zofo/core/zo.py"
FEEDSIGN = "/repo/src/zofo/methods/feedsign.py"
PHILOX = "/repo/src/zofo/core/philox.py"
DATASETS = "/env/site-packages/datasets/table.py"
ENGINE = "/repo/src/zofo/engine/prepare.py"


def entry(tt: float, ct: float, callers: dict) -> tuple:
    """A pstats entry: (primitive calls, calls, tottime, cumtime, callers); call counts do not matter."""
    return (1, 1, tt, ct, callers)


def by(tt: float, ct: float | None = None) -> tuple:
    """A callers value: (calls, primitive calls, tottime, cumtime) of the calls from one caller."""
    return (1, 1, tt, tt if ct is None else ct)


# Keys as cProfile writes them; every cumtime below is its own tottime plus its callees' time.
WRAPPED = (MODULE, 1774, "_wrapped_call_impl")
CALL = (MODULE, 1782, "_call_impl")
BERT_FWD = (BERT, 620, "forward")
LINEAR = ("~", 0, "<built-in method torch._C._nn.linear>")
MUL = ("~", 0, "<built-in method torch.mul>")
ADD_SCALED = (ZO, 69, "add_scaled_")
ADD_ = ("~", 0, "<method 'add_' of 'torch._C.TensorBase' objects>")
P_NORMAL = (PHILOX, 286, "normal_")
P_FILL = (PHILOX, 245, "_c_fill")
KERNEL = ("~", 0, "<built-in method zofo.core._philox.normal>")
COPY_ = ("~", 0, "<method 'copy_' of 'torch._C.TensorBase' objects>")
T_NORMAL = ("~", 0, "<method 'normal_' of 'torch._C.TensorBase' objects>")
SLICE = (DATASETS, 186, "fast_slice")
SCORES = (OBJECTIVE, 146, "scores")
ZO_LAMBDA = (ZO, 202, "<lambda>")
CLIENT = (FEEDSIGN, 80, "client_update")

STATS = {
    # forward: 0.1 + 0.2 + 0.3 own, linear 2.9, mul 0.5 from the model's code -> 4.0 at the outermost call
    WRAPPED: entry(0.1, 4.0, {SCORES: by(0.1, 4.0)}),
    CALL: entry(0.2, 3.9, {WRAPPED: by(0.2, 3.9)}),
    BERT_FWD: entry(0.3, 3.7, {CALL: by(0.3, 3.7)}),
    LINEAR: entry(2.9, 2.9, {BERT_FWD: by(2.9)}),
    # mul: 1.5 s moving weights (from zo.py), 0.5 s inside the forward
    MUL: entry(2.0, 2.0, {ADD_SCALED: by(1.5), BERT_FWD: by(0.5)}),
    ADD_SCALED: entry(0.2, 2.3, {CLIENT: by(0.2, 2.3)}),
    # add_: 0.6 s moving weights, 0.4 s in the objective's own code (not a move)
    ADD_: entry(1.0, 1.0, {ADD_SCALED: by(0.6), SCORES: by(0.4)}),
    # the portable generator: entered once from zo.py with 1.25 s inside; its copy_ is part of the draw
    P_NORMAL: entry(0.05, 1.25, {ZO_LAMBDA: by(0.05, 1.25)}),
    P_FILL: entry(0.1, 1.2, {P_NORMAL: by(0.1, 1.2)}),
    KERNEL: entry(0.9, 0.9, {P_FILL: by(0.9)}),
    COPY_: entry(0.2, 0.2, {P_FILL: by(0.2)}),
    # torch's generator
    T_NORMAL: entry(0.5, 0.5, {ZO_LAMBDA: by(0.5)}),
    SLICE: entry(0.7, 0.7, {(ENGINE, 150, "client_batches"): by(0.7)}),
    SCORES: entry(0.15, 4.55, {CLIENT: by(0.15, 4.55)}),
}
# By hand: total = sum of the tottimes; forward 4.0; draw 1.25 + 0.5; moves 1.5 + 0.6; other the rest
# (add_scaled_'s own 0.2, the objective's add_ 0.4, the data slicing 0.7, scores' own 0.15).
TOTAL = 0.1 + 0.2 + 0.3 + 2.9 + 2.0 + 0.2 + 1.0 + 0.05 + 0.1 + 0.9 + 0.2 + 0.5 + 0.7 + 0.15
FORWARD, DRAW, MOVES = 4.0, 1.75, 2.1
OTHER = 0.2 + 0.4 + 0.7 + 0.15


def test_split_profile_gives_the_hand_computed_seconds_and_shares():
    split = split_profile(STATS)
    assert split.total == pytest.approx(TOTAL)
    assert split.forward == pytest.approx(FORWARD)
    assert split.draw == pytest.approx(DRAW)
    assert split.moves == pytest.approx(MOVES)
    assert split.other == pytest.approx(OTHER)
    shares = split.shares()
    assert shares == pytest.approx(
        {"forward": FORWARD / TOTAL, "draw": DRAW / TOTAL, "moves": MOVES / TOTAL, "other": OTHER / TOTAL}
    )


def test_split_profile_names_match_what_cprofile_writes_for_this_torch():
    """The attribution reads cProfile's names for torch's modules and ops and zofo's generator: a real
    profile of a forward pass, a portable draw and a weight move gives each part some time."""
    from zofo.core import philox
    from zofo.core.zo import SeededDirections, trainable_parameters

    loaded = load_tiny_llama()
    model = loaded.model
    params = trainable_parameters(model)
    directions = SeededDirections(params, 1e-3, mode="lean", generator="philox")
    ids = torch.zeros(1, 8, dtype=torch.long)
    out = torch.empty(1 << 12)
    prof = cProfile.Profile()
    prof.enable()
    with torch.no_grad():
        model(input_ids=ids)
        philox.normal_(out, 1, 0)
        directions.perturb(7, 1.0)
        directions.perturb(7, -1.0)
    prof.disable()
    split = split_profile(pstats.Stats(prof).stats)
    assert split.forward > 0
    assert split.draw > 0
    assert split.moves > 0
    assert split.forward + split.draw + split.moves <= split.total + 1e-9
    assert sum(split.shares().values()) == pytest.approx(1.0)


# -- the baseline tree -------------------------------------------------------------------------------


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        check=True,
        capture_output=True,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with a zofo package, its kernel source committed and a built kernel beside it."""
    root = tmp_path / "repo"
    core = root / "src" / "zofo" / "core"
    core.mkdir(parents=True)
    (root / "src" / "zofo" / "__init__.py").write_text("")
    (core / "_philox.c").write_text("/* kernel */\n")
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "one")
    (core / "_philox.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\x7fELF fake")  # built, not committed
    return root


def test_unknown_revision_fails_cleanly_naming_it(repo, tmp_path):
    with pytest.raises(BaselineError) as e:
        build_baseline("no-such-revision", tmp_path / "out", repo)
    assert "no-such-revision" in str(e.value)
    assert "unknown revision" in str(e.value)


def test_a_folder_outside_git_fails_cleanly(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(BaselineError) as e:
        build_baseline("perf-baseline", tmp_path / "out", plain)
    assert "perf-baseline" in str(e.value)
    assert "not in a git repository" in str(e.value)


def test_export_gets_the_current_kernel_only_when_its_source_is_the_same(repo, tmp_path):
    kernel = "_philox.cpython-311-x86_64-linux-gnu.so"
    tree, what = build_baseline("HEAD", tmp_path / "same", repo)
    assert (tree / "src" / "zofo" / "__init__.py").is_file()
    assert (tree / "src" / "zofo" / "core" / kernel).read_bytes() == b"\x7fELF fake"
    assert "copied" in what
    (repo / "src" / "zofo" / "core" / "_philox.c").write_text("/* another kernel */\n")
    tree, what = build_baseline("HEAD", tmp_path / "other", repo)
    assert (tree / "src" / "zofo" / "core" / "_philox.c").read_text() == "/* kernel */\n"
    # not the current kernel: the baseline's own source is compiled, or (here, a fake source without a
    # pyproject) the report says it draws through torch ops
    assert not (tree / "src" / "zofo" / "core" / kernel).exists()
    assert "did not compile" in what and "torch ops" in what


def test_an_unavailable_baseline_leaves_the_current_tree_alone_with_a_line(tmp_path, capsys):
    opts = replace(bench.QUICK, sections=("dag",), baseline="no-such-revision-anywhere")
    tree_list, line = make_trees(opts, tmp_path)
    assert [t.name for t in tree_list] == [CURRENT]
    assert "no-such-revision-anywhere" in line
    assert "no ratios" in line
    assert "no-such-revision-anywhere" in capsys.readouterr().err


# -- interleaving and ratios -------------------------------------------------------------------------

TREES = [Tree(CURRENT, Path("/a"), "a"), Tree(BASELINE, Path("/b"), "b")]


def test_interleaved_alternates_the_trees_after_the_untimed_calls_and_drops_those():
    calls = []

    def measure(tree: Tree, i: int) -> float:
        calls.append((tree.name, i))
        return float(i)

    samples = interleaved(TREES, measure, repeats=2, warmup=1)
    assert calls == [
        (CURRENT, -1),
        (BASELINE, -1),
        (CURRENT, 0),
        (BASELINE, 0),
        (CURRENT, 1),
        (BASELINE, 1),
    ]
    assert samples.values == {CURRENT: [0.0, 1.0], BASELINE: [0.0, 1.0]}


def test_a_failed_tree_is_not_called_again_and_keeps_its_reason():
    calls = []

    def measure(tree: Tree, i: int) -> float:
        calls.append((tree.name, i))
        if tree.name == BASELINE and i == 0:
            raise MeasureFailed("exit 1: boom")
        return 1.0

    samples = interleaved(TREES, measure, repeats=3, warmup=0)
    assert [c for c in calls if c[0] == BASELINE] == [(BASELINE, 0)]
    assert samples.values[CURRENT] == [1.0, 1.0, 1.0]
    assert samples.failed == {BASELINE: "exit 1: boom"}
    assert samples.ok(CURRENT) and not samples.ok(BASELINE)


def test_rows_carry_the_median_and_the_ratio_current_over_baseline(tmp_path):
    rows = Rows(bench.QUICK)
    p = Pipeline(rows, TREES, tmp_path)
    p.add("dag_dry_run", Samples({CURRENT: [3.0, 1.0, 2.0], BASELINE: [8.0, 4.0, 6.0]}), pipeline.median)
    p.add("startup_fixed", Samples({CURRENT: [2.0], BASELINE: []}, {BASELINE: "exit 2: no"}), pipeline.median)
    df = rows.frame()
    dag = df[df["measure"] == "dag_dry_run"]
    cur = dag[(dag["tree"] == CURRENT) & (dag["ratio_of"] == "dag_dry_run@baseline")]
    assert cur["seconds"].tolist() == [2.0]
    assert cur["ratio"].tolist() == pytest.approx([2.0 / 6.0])
    base = dag[dag["tree"] == BASELINE]
    assert base["seconds"].tolist() == [6.0] and base["ratio_of"].tolist() == [""]
    startup = df[df["measure"] == "startup_fixed"]
    assert startup.loc[startup["tree"] == BASELINE, "note"].tolist() == ["failed: exit 2: no"]
    # no ratio against a baseline that failed
    assert startup.loc[startup["tree"] == CURRENT, "ratio_of"].tolist() == [""]


# -- options -----------------------------------------------------------------------------------------


def parse(argv: list[str]) -> bench.BenchOptions:
    p = argparse.ArgumentParser()
    bench.add_arguments(p)
    return bench.options_from_args(p.parse_args(argv))


def test_the_new_sections_are_options_and_not_in_the_default():
    assert bench.options.PIPELINE_SECTIONS == ("startup", "dag", "throughput")
    for name in ("startup", "dag", "throughput"):
        assert name in bench.options.SECTIONS
        assert parse(["--sections", name]).run_sections == (name,)
    assert not {"startup", "dag", "throughput"} & set(bench.BenchOptions().run_sections)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main(["bench", "--help"])
    assert all(name in out.getvalue() for name in ("startup", "dag", "throughput", "--baseline"))


def test_pipeline_options_parse_and_none_means_no_baseline():
    opts = parse(["--baseline", "none", "--throughput-layers", "1,all", "--throughput-methods", "fedkseed"])
    assert opts.baseline is None
    assert opts.throughput_layers == (1, None)
    assert opts.throughput_methods == ("fedkseed",)
    assert parse([]).baseline == "perf-baseline"


@pytest.mark.parametrize(
    ("argv", "key"),
    [
        (["--throughput-layers", "0"], "--throughput-layers"),
        (["--throughput-layers", "one"], "--throughput-layers"),
        (["--throughput-layers", "1,1"], "--throughput-layers"),
        (["--throughput-methods", "fedavg"], "--throughput-methods"),
        (["--throughput-rounds", "0"], "--throughput-rounds"),
        (["--pipeline-repeats", "0"], "--pipeline-repeats"),
        (["--pipeline-warmup", "-1"], "--pipeline-warmup"),
        (["--pipeline-model", "gpt2"], "--pipeline-model"),
        (["--baseline", " "], "--baseline"),
    ],
)
def test_bad_pipeline_option_raises_config_error_naming_it(argv, key):
    with pytest.raises(ConfigError) as e:
        parse(argv)
    assert e.value.key == key


# -- one tiny run of the three sections --------------------------------------------------------------

PIPELINE_MEASURES = (
    "startup_fixed",
    "startup_eval0",
    "import_engine_loop",
    "dag_dry_run",
    "throughput_feedsign",
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`zofo bench --quick` of the three sections on tiny-llama, the current code alone, FeedSign only."""
    tmp = tmp_path_factory.mktemp("pipeline")
    out = io.StringIO()
    argv = ["bench", "--quick", "--sections", "startup,dag,throughput", "--baseline", "none"]
    argv += ["--throughput-methods", "feedsign", "--out", str(tmp), "--figures", str(tmp / "figures")]
    with contextlib.redirect_stdout(out):
        code = main(argv)
    df = pd.read_csv(tmp / "bench.csv", keep_default_na=False, na_values=[""])
    return {"code": code, "stdout": out.getvalue(), "df": df, "md": (tmp / "bench.md").read_text()}


def test_tiny_run_writes_every_pipeline_measure_with_the_bench_columns(tiny_run):
    assert tiny_run["code"] == 0
    df = tiny_run["df"]
    assert list(df.columns) == list(bench.CSV_COLUMNS)
    for measure in PIPELINE_MEASURES:
        row = df[df["measure"] == measure]
        assert len(row) == 1, measure
        r = row.iloc[0]
        assert r["tree"] == CURRENT
        assert math.isfinite(r["seconds"]) and r["seconds"] > 0, measure
        assert r["repeats"] == bench.QUICK.pipeline_repeats
        assert pd.isna(r["ratio_of"])  # no baseline, no ratio
        assert r["threads"] == bench.QUICK.run_threads


def test_tiny_run_counts_the_estimates_and_splits_the_training_time(tiny_run):
    r = tiny_run["df"].query("measure == 'throughput_feedsign'").iloc[0]
    # FeedSign: one estimate per client and round; 5 clients, --quick's 2 rounds
    assert r["items"] == 5 * 2
    assert r["layers"] == "all" and r["clients"] == 5 and r["shape"] == "8x24"
    shares = [r[f"share_{k}"] for k in ("forward", "draw", "moves", "other")]
    assert all(0 <= x <= 1 for x in shares)
    assert sum(shares) == pytest.approx(1.0)
    assert r["share_forward"] > 0 and r["share_draw"] > 0 and r["share_moves"] > 0


def test_tiny_run_says_there_is_no_baseline_and_prints_what_it_wrote(tiny_run):
    df, md = tiny_run["df"], tiny_run["md"]
    assert tiny_run["stdout"] == md
    note = df[(df["measure"] == "tree") & (df["tree"] == BASELINE)]["note"].tolist()
    assert len(note) == 1 and "--baseline none" in note[0]
    assert "--baseline none" in md
    assert "FeedSign on the 1-block model" in md
    for measure in PIPELINE_MEASURES[:4]:
        assert measure in md


def test_feedsign_default_compares_each_trees_own_default_generator(tmp_path):
    """Old default against new default: the current tree's FeedSign under its default generator over
    the baseline's under its own, from the rows already measured."""
    rows = Rows(bench.QUICK)
    p = Pipeline(rows, TREES, tmp_path)
    # (training seconds, estimates) per timed run
    measured = {
        "feedsign": Samples({CURRENT: [(2.0, 50), (2.5, 50), (5.0, 50)], BASELINE: [(9.0, 50)]}),
        "feedsign-torch": Samples({CURRENT: [(4.0, 50)], BASELINE: [(10.0, 50), (20.0, 50), (30.0, 50)]}),
    }
    p.feedsign_default(1, measured, {CURRENT: "philox", BASELINE: "torch"})
    df = rows.frame()
    cur = df[(df["measure"] == "throughput_feedsign_default") & (df["tree"] == CURRENT)]
    base = df[(df["measure"] == "throughput_feedsign_default") & (df["tree"] == BASELINE)]
    # current: philox runs, median 2.5 s -> 20 estimates/s; baseline: torch runs, median 20 s -> 2.5
    assert cur["seconds"].tolist() == [2.5] and base["seconds"].tolist() == [20.0]
    assert cur["ratio_of"].tolist() == ["throughput_feedsign_default@baseline"]
    assert cur["ratio"].tolist() == pytest.approx([(50 / 2.5) / (50 / 20.0)])
    assert "philox" in cur["note"].iloc[0] and "torch" in base["note"].iloc[0]
    assert cur["layers"].tolist() == ["1"]


def test_throughput_runs_take_each_trees_own_zo_settings_but_the_rows_generator(tmp_path):
    from zofo.bench.pipeline import Tree, throughput_config, with_tree_zo

    new, old = tmp_path / "new", tmp_path / "old"
    for root, zo in ((new, {"eps": 1e-3, "generator": "torch", "batch_clients": True}), (old, {"eps": 1e-3})):
        (root / "config").mkdir(parents=True)
        (root / "config" / "config.yaml").write_text(yaml.safe_dump({"run_defaults": {"zo": zo}}))
    cfg = throughput_config(bench.QUICK, "feedsign", 1)
    mine = with_tree_zo(cfg, Tree("current", new, ""))
    theirs = with_tree_zo(cfg, Tree("baseline", old, ""))
    assert mine["zo"]["batch_clients"] is True and mine["zo"]["generator"] == cfg["zo"]["generator"]
    assert "batch_clients" not in theirs["zo"]  # a key the older revision does not know never reaches it
    assert theirs["zo"] == cfg["zo"]
