"""Grid cells, cost, bits-to-target, LaTeX and the papers' numbers, on hand-written run folders whose
expected values are worked out by hand (binary fractions where a comparison sits exactly on a target)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pytest
import yaml
from fakes import make_run, run_tables

from zofo.analysis import tables
from zofo.analysis.load import PARAMETERS, grid_cell, grid_columns, load_runs

ROOT = Path(__file__).resolve().parents[2]


# ---- the grid cell of every row -------------------------------------------------------------------


def test_grid_columns_skip_what_rows_carry_and_always_add_the_model_size() -> None:
    axes = ["partition.alpha", "zo.eps", "method.params.K", "model.name", "aggregator.name"]
    assert grid_columns(axes) == ["method.params.K", "zo.eps", PARAMETERS]
    assert grid_columns([]) == [PARAMETERS]


def test_load_runs_attaches_the_grid_cell_to_rows_and_runs(tmp_path: Path) -> None:
    runs = [
        make_run(tmp_path, "fedkseed", 0, [0.25, 0.5], params={"lr": 1e-3, "K": 4, "mods": ["q", "v"]}),
        make_run(tmp_path, "fedavg", 0, [0.25, 0.5, 0.75], parameters=None),
        make_run(tmp_path, "fedkseed", 1, [], params={"lr": 1e-3, "K": 8}, status="failed"),
    ]
    axes = ["method.params.K", "method.params.mods", "no.such.key", "partition.alpha"]
    rows, status = load_runs(runs, axes)
    assert [c for c in rows.columns if c in grid_columns(axes)] == grid_columns(axes)
    by_run = rows.groupby("run_dir")
    a, b = by_run.get_group(str(runs[0])), by_run.get_group(str(runs[1]))
    assert len(rows) == 5 and list(a["method.params.K"]) == [4, 4] and list(a[PARAMETERS]) == [1000, 1000]
    assert list(a["method.params.mods"]) == ['["q", "v"]', '["q", "v"]']  # JSON text: usable as a group key
    # A method without the swept key, a run that records no model size, a key no run has: NaN.
    assert (
        b["method.params.K"].isna().all() and b[PARAMETERS].isna().all() and rows["no.such.key"].isna().all()
    )
    assert "partition.alpha" not in rows.columns  # the row's alpha is the cell's
    # The run that failed before its first row still has its cell.
    assert list(status["method.params.K"].fillna(-1)) == [4, -1, 8]
    # No readable meta.json: every column is there, and NaN.
    cell = grid_cell(None, ["method.params.K"])
    assert list(cell) == ["method.params.K", PARAMETERS] and all(math.isnan(v) for v in cell.values())


# ---- grid columns as group keys -----------------------------------------------------------------


def _k_sweep(tmp_path: Path) -> list[Path]:
    # K = 4: finals 0.5 and 0.75 (mean 0.625); K = 16: finals 0.75 and 1.0 (mean 0.875); plus a K = 16
    # seed that failed during setup (no rows at all).
    return [
        make_run(tmp_path, "fedkseed", 0, [0.25, 0.75], params={"lr": 1e-3, "K": 16}, name="k16-s0"),
        make_run(tmp_path, "fedkseed", 0, [0.25, 0.5], params={"lr": 1e-3, "K": 4}, name="k4-s0"),
        make_run(tmp_path, "fedkseed", 1, [0.25, 0.75], params={"lr": 1e-3, "K": 4}, name="k4-s1"),
        make_run(tmp_path, "fedkseed", 1, [0.25, 1.0], params={"lr": 1e-3, "K": 16}, name="k16-s1"),
        make_run(tmp_path, "fedkseed", 2, [], params={"lr": 1e-3, "K": 16}, status="failed", name="k16-s2"),
    ]


def test_grid_columns_split_groups_without_tripping_the_consistency_check(tmp_path: Path) -> None:
    dirs = _k_sweep(tmp_path)
    # Without the sweep axis, K = 4 and K = 16 of one seed look like one run twice: refused.
    with pytest.raises(ValueError, match="different config_hash"):
        run_tables(dirs)

    runs, _ = run_tables(dirs, ["method.params.K"])
    grid = grid_columns(["method.params.K"])
    t = tables.final_metric_table(runs, grid)
    assert list(t.columns[: len(tables.GROUP_KEYS) + 2]) == [*tables.GROUP_KEYS, *grid]
    assert list(t["method.params.K"]) == [4, 16]  # sorted by the sweep value
    assert list(t["final_mean"]) == [0.625, 0.875]
    assert list(t["seeds"]) == ["0,1", "0,1"]
    assert list(t["n_failed"]) == [0, 1]  # the rowless run found its K in its config
    formatted = tables.format_final_table(t, grid=grid)
    assert list(formatted["method.params.K"]) == ["4", "16"]
    assert list(formatted[PARAMETERS]) == ["0.0M", "0.0M"]  # 1000 weights, in millions


def test_grid_columns_still_refuse_a_second_difference(tmp_path: Path) -> None:
    dirs = _k_sweep(tmp_path)[:3] + [
        make_run(tmp_path, "fedkseed", 2, [0.25, 0.5], params={"lr": 1e-2, "K": 4}, name="k4-s2-lr")
    ]
    with pytest.raises(ValueError, match="method.params.lr"):
        run_tables(dirs, ["method.params.K"])


def test_grid_columns_must_be_columns(tmp_path: Path) -> None:
    runs, _ = run_tables(_k_sweep(tmp_path)[:2], ["method.params.K"])
    with pytest.raises(ValueError, match="not columns"):
        tables.final_metric_table(runs, ["K"])


# ---- cost_table ---------------------------------------------------------------------------------------


def test_cost_table_means_and_sds(tmp_path: Path) -> None:
    dirs = [
        # client 0 + 4 + 6 = 10 s over 4 rounds = 2.5; server 2 / 4 = 0.5; peak 150. Eval time is big
        # on purpose: it must not enter.
        make_run(
            tmp_path,
            "fedavg",
            0,
            [0.2, 0.3, 0.4],
            client=[0, 4, 6],
            server=[0, 1, 1],
            evals=[50, 50, 50],
            rss=[100, 150, 120],
        ),
        # 14 / 4 = 3.5; 3 / 4 = 0.75; peak 250. Rows at rounds 0 and 4 only, its config as the other
        # seed's: the two are seeds of one group.
        make_run(
            tmp_path,
            "fedavg",
            1,
            [0.2, 0.4],
            eval_every=4,
            config={"federation": {"eval_every": 2}},
            client=[0, 14],
            server=[0, 3],
            rss=[90, 250],
        ),
        make_run(tmp_path, "feedsign", 0, [0.2, 0.3], client=[0, 1], server=[0, 0.5], rss=[10, 20]),
        # diverged: its costs are not averaged
        make_run(
            tmp_path,
            "feedsign",
            1,
            [0.2, 0.3],
            status="diverged",
            client=[0, 999],
            server=[0, 999],
            rss=[9999, 9999],
        ),
    ]
    c = tables.cost_table(run_tables(dirs)[0])
    assert list(c.columns) == [
        *tables.GROUP_KEYS,
        "n_seeds",
        "client_seconds_per_round_mean",
        "client_seconds_per_round_sd",
        "server_seconds_per_round_mean",
        "server_seconds_per_round_sd",
        "peak_rss_mb_mean",
        "peak_rss_mb_sd",
    ]
    assert list(c["method"]) == ["fedavg", "feedsign"]  # FO first
    fa, fs = c.iloc[0], c.iloc[1]
    assert fa["n_seeds"] == 2
    assert fa["client_seconds_per_round_mean"] == pytest.approx(3.0)
    assert fa["client_seconds_per_round_sd"] == pytest.approx(math.sqrt(0.5))  # 2 x 0.5^2 over n - 1 = 1
    assert fa["server_seconds_per_round_mean"] == pytest.approx(0.625)
    assert fa["server_seconds_per_round_sd"] == pytest.approx(math.sqrt(2 * 0.125**2))
    assert fa["peak_rss_mb_mean"] == pytest.approx(200.0)
    assert fa["peak_rss_mb_sd"] == pytest.approx(math.sqrt(2 * 50.0**2))
    assert fs["n_seeds"] == 1
    assert fs["client_seconds_per_round_mean"] == pytest.approx(0.5)  # 1 s over 2 rounds
    assert fs["server_seconds_per_round_mean"] == pytest.approx(0.25)
    assert fs["peak_rss_mb_mean"] == pytest.approx(20.0)
    assert math.isnan(fs["client_seconds_per_round_sd"]) and math.isnan(fs["peak_rss_mb_sd"])


def test_seeds_run_at_different_thread_counts_are_not_one_experiment(tmp_path: Path) -> None:
    # The thread count changes float rounding, so it is part of a run's identity: runs that differ in it
    # are never averaged as seeds of one experiment (nor their timings).
    with pytest.raises(ValueError, match=r"differ in more than the seed \(threads: 1 vs 4\)"):
        run_tables(
            [
                make_run(tmp_path, "fedavg", 0, [0.2, 0.3], threads=1),
                make_run(tmp_path, "fedavg", 1, [0.2, 0.3], threads=4),
            ]
        )


# ---- bits_to_target -----------------------------------------------------------------------------------


def _race(tmp_path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    # Rounds 0, 2, 4. ok runs start at 0.25; fedavg's final mean (0.75) is the best, so the default
    # target is 0.25 + 0.5 x (0.75 - 0.25) = 0.5.
    return run_tables(
        [
            # reaches 0.5 exactly at round 2 (>=) and again at 4: the first row counts, 2000 bits
            make_run(tmp_path, "fedavg", 0, [0.25, 0.5, 0.75], bits_up_cum=[0, 2000, 4000]),
            # reaches it at round 4 only: 4000 bits
            make_run(tmp_path, "fedavg", 1, [0.25, 0.375, 0.75], bits_up_cum=[0, 2000, 4000]),
            # diverged: would reach at round 2 and, if averaged, move both start and best
            make_run(tmp_path, "fedavg", 2, [0.0, 1.0], status="diverged", bits_up_cum=[0, 1]),
            make_run(tmp_path, "feedsign", 0, [0.25, 0.375, 0.5], bits_up_cum=[0, 4, 8]),
            make_run(tmp_path, "zo-fedsgd", 0, [0.25, 0.25, 0.375], bits_up_cum=[0, 256, 512]),
        ]
    )


def test_bits_to_target_default_target_and_first_reaching_row(tmp_path: Path) -> None:
    t, target = tables.bits_to_target(*_race(tmp_path))
    assert target == 0.5
    assert list(t["method"]) == ["fedavg", "feedsign", "zo-fedsgd"]
    t = t.set_index("method")
    assert (t.loc["fedavg", "n_runs"], t.loc["fedavg", "n_reached"]) == (2, 2)  # diverged seed not counted
    assert t.loc["fedavg", "bits_up_to_target_mean"] == 3000.0  # (2000 + 4000) / 2
    assert t.loc["fedavg", "bits_up_to_target_sd"] == pytest.approx(math.sqrt(2 * 1000.0**2))
    assert t.loc["fedavg", "rounds_to_target_mean"] == 3.0  # (2 + 4) / 2
    assert (t.loc["feedsign", "n_reached"], t.loc["feedsign", "bits_up_to_target_mean"]) == (1, 8.0)
    assert math.isnan(t.loc["feedsign", "bits_up_to_target_sd"])
    # never reached: counted, NaN
    assert (t.loc["zo-fedsgd", "n_runs"], t.loc["zo-fedsgd", "n_reached"]) == (1, 0)
    assert math.isnan(t.loc["zo-fedsgd", "bits_up_to_target_mean"])
    assert math.isnan(t.loc["zo-fedsgd", "rounds_to_target_mean"])
    assert (t["target"] == 0.5).all()


def test_bits_to_target_explicit_target(tmp_path: Path) -> None:
    t, target = tables.bits_to_target(*_race(tmp_path), target=0.375)
    t = t.set_index("method")
    assert target == 0.375
    assert t.loc["fedavg", "bits_up_to_target_mean"] == 2000.0  # both seeds at round 2
    assert t.loc["feedsign", "bits_up_to_target_mean"] == 4.0
    assert t.loc["zo-fedsgd", "bits_up_to_target_mean"] == 512.0
    assert t.loc["zo-fedsgd", "rounds_to_target_mean"] == 4.0


def test_bits_to_target_refuses_several_settings_and_lower_is_better(tmp_path: Path) -> None:
    runs, curves = _race(tmp_path)
    with pytest.raises(ValueError, match="settings.*'other'"):
        tables.bits_to_target(pd.concat([runs, runs.assign(model="other")]), curves)
    with pytest.raises(ValueError, match="perplexity"):
        tables.bits_to_target(runs.assign(metric_name="perplexity"), curves)
    # By setting: each model its own target (the "other" copy has the same numbers, so the same one).
    both = tables.bits_to_target_by_setting(pd.concat([runs, runs.assign(model="other")]), curves)
    assert sorted(set(both["model"])) == ["other", "tiny"] and set(both["target"]) == {0.5}


# ---- LaTeX ---------------------------------------------------------------------------------------------


def test_write_latex_escapes_and_formats_mean_sd(tmp_path: Path) -> None:
    label = "lr_1e-3 & 50%"
    dirs = [  # finals 0.875, 0.88, 0.885: mean 0.880, sd sqrt((0.005^2 + 0 + 0.005^2) / 2) = 0.005
        make_run(tmp_path, "my_method", s, [0.5, f], label=label) for s, f in enumerate([0.875, 0.88, 0.885])
    ]
    out = tmp_path / "tex" / "final.tex"
    tables.write_latex(tables.final_metric_table(run_tables(dirs)[0]), out)
    tex = out.read_text()
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert r"my\_method" in tex and "my_method" not in tex
    assert r"lr\_1e-3 \& 50\%" in tex
    assert r"0.880 $\pm$ 0.005" in tex
    assert r"dirichlet ($\alpha$=0.5)" in tex
    assert r"eval loss: start $\rightarrow$ final" in tex  # headers are escaped too
    assert not {"±", "→", "α", "—"} & set(tex)  # no Unicode left for pdflatex to choke on
    assert not list(out.parent.glob(".final.tex.*"))  # no temporary file left behind


# ---- the papers' numbers -----------------------------------------------------------------------------------


def test_load_reported_concatenates_every_paper(tmp_path: Path) -> None:
    header = "paper,table,method,model,task,metric,value,source_note\n"
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "reported.csv").write_text(header + "b,T1,FedAvg,M,X,rouge_l,1.5,n\n")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "reported.csv").write_text(
        header + "a,T1,Ferret,M,X,rouge_l,2,n\na,T2,Ferret,M,Y,acc,3,n\n"
    )
    (tmp_path / "no-csv").mkdir()
    r = tables.load_reported(tmp_path)
    assert list(r.columns) == list(tables.REPORTED_COLUMNS)
    assert list(r["paper"]) == ["a", "a", "b"] and list(r["value"]) == [2.0, 3.0, 1.5]
    assert list(tables.read_reported([tmp_path / "b" / "reported.csv"])["paper"]) == ["b"]
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "reported.csv").write_text("paper,value\nc,1\n")
    with pytest.raises(ValueError, match="c/reported.csv"):
        tables.load_reported(tmp_path)


def _final(rows: Sequence[tuple[str, str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["method", "model", "task", "metric_name"]).assign(final_mean=0.3)


def test_attach_reported_matches_through_the_paper_scale_configs_spelling() -> None:
    cfg = yaml.safe_load((ROOT / "baselines" / "fedkseed" / "config.yaml").read_text())["run_defaults"]
    model, task = cfg["model"]["name"], cfg["task"]["name"]  # as a run's model / task columns hold them
    final = _final(
        [
            (
                "fedkseed",
                model,
                task,
                "rouge_l",
            ),  # FedKSeed, DataJuicer-1.3B, Dolly-15K: quoted by two papers
            ("fedavg-lora", model, task, "rouge_l"),  # FedIT
            ("fedkseed", model, task, "accuracy"),  # the config's classification stand-in: not comparable
            ("fedkseed", "tiny-llama", task, "rouge_l"),  # another model
            ("zo-fedsgd", model, task, "rouge_l"),  # no such paper row
        ]
    )
    out = tables.attach_reported(final, tables.load_reported(ROOT / "baselines"))
    assert list(out["reported"]) == [
        "30.91 (fedkseed, Ferret Table 2 (quoted from FedKSeed)); 30.91 (ferret, Table 2)",
        "30.8 (fedkseed, Ferret Table 2 (quoted from FedKSeed)); 30.8 (ferret, Table 2)",
        "",
        "",
        "",
    ]
    assert "reported" not in final.columns


def test_attach_reported_aliases_and_unmeasured_metrics() -> None:
    reported = pd.DataFrame(
        [
            ("p", "T1", "Ours", "Big-1B", "Set", "accuracy", 0.9, "n"),
            ("p", "T1", "Ours", "Big-1B", "Set", "comm_kilobytes_per_round_upper_bound", 18, "n"),
        ],
        columns=list(tables.REPORTED_COLUMNS),
    )
    final = _final(
        [("ours", "org/big-1b", "set-task", "accuracy"), ("ours", "org/big-1b", "set-task", "rouge_l")]
    )
    out = tables.attach_reported(
        final,
        reported,
        {"Ours": "ours"},
        model_aliases={"Big-1B": "org/big-1b"},
        task_aliases={"Set": "set-task"},
    )
    assert list(out["reported"]) == ["0.9 (p, T1)", ""]
    # Without the model alias nothing matches: the spellings differ.
    unaliased = tables.attach_reported(final, reported, {"Ours": "ours"}, task_aliases={"Set": "set-task"})
    assert list(unaliased["reported"]) == ["", ""]
