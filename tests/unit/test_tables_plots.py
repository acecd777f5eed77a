"""Tables and figures on hand-written run folders whose expected numbers are worked out by hand."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fakes import make_run, run_tables

from zofo.analysis import figures as plots
from zofo.analysis import tables
from zofo.analysis.load import load_runs

CLIENTS = 5
# Per client per round, fixed so the communication table has a known answer.
UP_BITS = {"fedavg": 1000, "feedsign": 1, "zo-fedsgd": 64}


def write_run(root: Path, method: str, seed: int, metrics: list[float], **kw: Any) -> Path:
    """A run of the study below: 5 clients, every client sends its method's ``UP_BITS`` a round."""
    kw.setdefault("name", f"{method}-{kw.get('label') or 'x'}-s{seed}")
    return make_run(root, method, seed, metrics, num_clients=CLIENTS, up_bits=UP_BITS[method], **kw)


@pytest.fixture
def study(tmp_path: Path) -> list[Path]:
    return [
        # zo-fedsgd first on disk: the table must still put FO first.
        write_run(tmp_path, "zo-fedsgd", 0, [0.2, 0.3, 0.45]),
        write_run(tmp_path, "zo-fedsgd", 1, [], status="failed"),  # failed in setup: no rows at all
        write_run(tmp_path, "fedavg", 0, [0.2, 0.4, 0.5]),
        write_run(tmp_path, "fedavg", 1, [0.2, 0.6, 0.7]),
        write_run(tmp_path, "feedsign", 0, [0.2, 0.25, 0.3]),
        write_run(tmp_path, "feedsign", 1, [0.2, 0.35, 0.4]),
        write_run(tmp_path, "feedsign", 2, [0.2, 0.9], status="diverged"),
    ]


def test_final_metric_table_numbers(study: list[Path]) -> None:
    runs, _ = run_tables(study)
    t = tables.final_metric_table(runs).set_index("method")
    assert list(t.index) == ["fedavg", "feedsign", "zo-fedsgd"]

    fa = t.loc["fedavg"]
    assert fa["final_mean"] == pytest.approx(0.6)
    assert fa["final_sd"] == pytest.approx(math.sqrt(0.02))  # (0.5 - 0.6)^2 + (0.7 - 0.6)^2 over n - 1 = 1
    assert fa["start_mean"] == pytest.approx(0.2)
    assert fa["gain_mean"] == pytest.approx(0.4)
    assert fa["gain_sd"] == pytest.approx(math.sqrt(0.02))
    assert (fa["n_seeds"], fa["seeds"], fa["n_diverged"], fa["n_failed"]) == (2, "0,1", 0, 0)
    assert fa["final_round"] == 4
    assert fa["bits_up_per_run"] == 1000 * CLIENTS * 4

    # The diverged seed (whose last metric, 0.9, would flatter the mean) is counted but not averaged.
    fs = t.loc["feedsign"]
    assert (fs["n_seeds"], fs["n_diverged"], fs["n_failed"]) == (2, 1, 0)
    assert fs["final_mean"] == pytest.approx(0.35)
    assert fs["final_sd"] == pytest.approx(math.sqrt(0.005))

    zo = t.loc["zo-fedsgd"]
    assert (zo["n_seeds"], zo["n_failed"]) == (1, 1)
    assert zo["final_mean"] == pytest.approx(0.45)
    assert math.isnan(zo["final_sd"]) and math.isnan(zo["gain_sd"])


def test_the_run_table_has_one_row_per_run_and_reads_back_as_written(study: list[Path]) -> None:
    rows, status = load_runs(study)
    runs = tables.run_table(rows, status, ["parameters"])
    read, _ = run_tables(study)
    assert len(runs) == len(study) == len(read)
    # What the CSV cannot tell apart: a missing reason and an empty one.
    pd.testing.assert_frame_equal(read, runs.assign(reason=runs["reason"].fillna("")), check_dtype=False)
    failed = read[read["status"] == "failed"].iloc[0]
    # The run that failed in setup keeps its keys from meta.json and has nothing measured.
    assert (failed["method"], failed["model"], failed["label"]) == ("zo-fedsgd", "tiny", "")
    assert math.isnan(failed["final_metric"]) and math.isnan(failed["final_round"])
    fa = read[(read["method"] == "fedavg") & (read["seed"] == 0)].iloc[0]
    # 1000 bits x 5 clients x 4 rounds in all; per client and round back to 1000.
    assert (fa["bits_up_total"], fa["bits_up_per_client_round"], fa["bits_up_per_round"]) == (
        20000,
        1000,
        5000,
    )


def test_markdown_formatting(study: list[Path]) -> None:
    formatted = tables.format_final_table(tables.final_metric_table(run_tables(study)[0]))
    assert formatted.loc[0, "final"] == "0.600 ± 0.141"
    assert formatted.loc[2, "final"] == "0.450 ± n/a"
    assert formatted.loc[0, "partition"] == "dirichlet (α=0.5)"
    md = tables.to_markdown(formatted)
    assert "| fedavg" in md and "0.600 ± 0.141" in md and "20 kbit" in md
    assert tables.pm(0.8123, 0.0101) == "0.812 ± 0.010"
    assert tables.format_bits(318_494_720) == "318 Mbit"


def test_group_with_only_diverged_runs_keeps_its_row(tmp_path: Path) -> None:
    runs = [write_run(tmp_path, "feedsign", s, [0.2, 0.1], status="diverged") for s in (0, 1)]
    t = tables.final_metric_table(run_tables(runs)[0])
    assert len(t) == 1
    assert (t.loc[0, "n_seeds"], t.loc[0, "n_diverged"]) == (0, 2)
    assert math.isnan(t.loc[0, "final_mean"])


def test_different_config_hash_for_one_seed_is_refused(tmp_path: Path) -> None:
    runs = [
        write_run(tmp_path, "fedavg", 0, [0.2, 0.5], params={"lr": 1e-3}, name="a"),
        write_run(tmp_path, "fedavg", 0, [0.2, 0.7], params={"lr": 1e-2}, name="b"),
    ]
    with pytest.raises(ValueError, match="different config_hash"):
        run_tables(runs)


def test_seeds_with_different_configs_are_refused(tmp_path: Path) -> None:
    # Hashes differ anyway (they include the seed); the lr difference must still be caught.
    runs = [
        write_run(tmp_path, "fedavg", 0, [0.2, 0.5], params={"lr": 1e-3}),
        write_run(tmp_path, "fedavg", 1, [0.2, 0.7], params={"lr": 1e-2}),
    ]
    with pytest.raises(ValueError, match="method.params.lr"):
        run_tables(runs)


def test_one_seed_in_two_folders_is_refused(tmp_path: Path) -> None:
    runs = [write_run(tmp_path, "fedavg", 0, [0.2, 0.5], name=n) for n in ("a", "b")]
    with pytest.raises(ValueError, match="counted 2 times"):
        run_tables(runs)


def test_labels_separate_configs(tmp_path: Path) -> None:
    runs = [
        write_run(tmp_path, "fedavg", 0, [0.2, 0.5], params={"lr": 1e-3}, label="lr1e-3"),
        write_run(tmp_path, "fedavg", 0, [0.2, 0.7], params={"lr": 1e-2}, label="lr1e-2"),
    ]
    t = tables.final_metric_table(run_tables(runs)[0])
    assert sorted(t["label"]) == ["lr1e-2", "lr1e-3"]


def test_communication_table(tmp_path: Path) -> None:
    runs = [
        write_run(tmp_path, "fedavg", 0, [0.2, 0.5, 0.6], clients_per_round=2),
        write_run(tmp_path, "feedsign", 0, [0.2, 0.3, 0.4]),
        write_run(tmp_path, "feedsign", 1, [0.2, 0.5], status="diverged"),
    ]
    c = tables.communication_table(run_tables(runs)[0]).set_index("method")
    assert c.loc["fedavg", "bits_up_per_client_round"] == 1000
    assert c.loc["fedavg", "bits_up_per_round"] == 2000
    assert c.loc["fedavg", "cohort_size"] == "2"
    assert c.loc["feedsign", "bits_up_per_client_round"] == 1
    assert c.loc["feedsign", "n_runs"] == 2  # the diverged run's bits were sent too
    assert "1 kbit" in tables.to_markdown(tables.format_communication_table(c.reset_index()))


def test_communication_table_checks_counted_bits_against_the_formula(tmp_path: Path) -> None:
    runs = [
        write_run(tmp_path, "fedavg", 0, [0.2, 0.5], formula=(1000, 1000)),
        write_run(tmp_path, "feedsign", 0, [0.2, 0.3], formula=(1, 1)),
        write_run(tmp_path, "zo-fedsgd", 0, [0.2, 0.3]),  # no formula recorded: not checked
    ]
    c = tables.communication_table(run_tables(runs)[0]).set_index("method")
    assert c.loc["fedavg", "matches_formula"] is True and c.loc["feedsign", "matches_formula"] is True
    assert c.loc["zo-fedsgd", "matches_formula"] is None
    assert c.loc["feedsign", "up_vs_fedavg"] == 1 / 1000 and c.loc["zo-fedsgd", "up_vs_fedavg"] == 64 / 1000
    tables.check_communication(c.reset_index())

    # A method whose payload grew by one bit against its definition fails the check, by name.
    bad = make_run(tmp_path, "feedsign", 1, [0.2, 0.3], num_clients=CLIENTS, up_bits=2, formula=(1, 1))
    c = tables.communication_table(run_tables([runs[0], bad])[0])
    assert list(c.set_index("method")["matches_formula"]) == [True, False]
    with pytest.raises(ValueError, match="feedsign .*counted 2 up"):
        tables.check_communication(c)
    # A round with rejected payloads broadcasts less than the formula's full cohort: not checked.
    rejected = make_run(
        tmp_path,
        "feedsign",
        2,
        [0.2, 0.3],
        num_clients=CLIENTS,
        up_bits=2,
        formula=(1, 1),
        rejected_cum=[0, 1],
    )
    c = tables.communication_table(run_tables([rejected])[0])
    assert c.loc[0, "matches_formula"] is None


def test_the_communication_table_counts_catch_up_in_the_downlink_and_checks_the_rest(tmp_path: Path) -> None:
    # FeedSign, 2 of 5 clients a round, 4 rounds: 1 bit up and 1 vote down per client and round, and
    # returning clients downloaded 6 missed votes by round 2 and 10 by round 4.
    run = write_run(
        tmp_path, "feedsign", 0, [0.2, 0.3, 0.4], clients_per_round=2, formula=(1, 1), catch_up_cum=[0, 6, 10]
    )
    runs = run_tables([run])[0]
    assert runs.loc[0, "bits_catch_up_total"] == 10 and runs.loc[0, "bits_down_total"] == 1 * 2 * 4 + 10
    c = tables.communication_table(runs).set_index("method")
    assert c.loc["feedsign", "bits_down_per_client_round"] == (8 + 10) / 4 / 2
    assert c.loc["feedsign", "catch_up_per_client_round"] == 10 / 4 / 2
    # The broadcasts alone are the formula's 1 bit per client and round.
    assert c.loc["feedsign", "matches_formula"]
    shown = tables.format_communication_table(c.reset_index())
    assert (shown.loc[0, "downlink / client / round"], shown.loc[0, "of which catch-up"]) == (
        "2.25 bit",
        "1.25 bit",
    )

    # A run table written before catch-up was counted (no column) is checked as before.
    c = tables.communication_table(runs.drop(columns="bits_catch_up_total"))
    assert c.loc[0, "catch_up_per_client_round"] == 0
    assert c.loc[0, "matches_formula"] == False  # noqa: E712 (checked and off, not None)
    with pytest.raises(ValueError, match="feedsign .*counted 1 up / 2.25 down"):
        tables.check_communication(c)


def test_a_grid_value_splits_the_communication_table(tmp_path: Path) -> None:
    # K = 4 and K = 16 send different payloads: one row each, each checked against its own formula,
    # rather than one row averaging them (which could match no formula).
    runs = [
        make_run(
            tmp_path,
            "fedkseed",
            s,
            [0.2, 0.3],
            params={"lr": 1e-3, "K": k},
            config={"method": {"params": {"K": k}}},
            up_bits=32 * k,
            formula=(32 * k, 32 * k),
            name=f"k{k}-s{s}",
        )
        for k in (4, 16)
        for s in (0, 1)
    ]
    c = tables.communication_table(
        run_tables(runs, ["method.params.K"])[0], ["method.params.K", "parameters"]
    )
    assert list(c["method.params.K"]) == [4, 16]
    assert list(c["bits_up_per_client_round"]) == [128, 512] and list(c["n_runs"]) == [2, 2]
    assert list(c["matches_formula"]) == [True, True] and list(c["per_run_spread"]) == [0, 0]


def _nonempty(path: Path, magic: bytes) -> None:
    assert path.is_file() and path.stat().st_size > 1000
    assert path.read_bytes().startswith(magic)


@pytest.mark.parametrize("x", ["round", "bits_up_cum"])
def test_convergence_writes_png_and_pdf(study: list[Path], tmp_path: Path, x: str) -> None:
    runs, curves = run_tables(study)
    summary = tables.curve_summary_table(curves)
    png, pdf = plots.convergence(summary, curves, x, tmp_path / "figs" / f"conv_{x}.png", "test", runs=runs)
    assert pdf == png.with_suffix(".pdf")
    _nonempty(png, b"\x89PNG")
    _nonempty(pdf, b"%PDF")


def test_the_curve_summary_is_the_mean_and_spread_of_the_ok_runs(study: list[Path]) -> None:
    summary = tables.curve_summary_table(run_tables(study)[1]).set_index(["method", "round"])
    # fedavg seeds 0 and 1 at round 2: 0.4 and 0.6; the diverged feedsign seed's 0.9 is left out.
    assert summary.loc[("fedavg", 2), "metric_mean"] == pytest.approx(0.5)
    assert summary.loc[("fedavg", 2), "metric_sd"] == pytest.approx(math.sqrt(0.02))
    assert (summary.loc[("fedavg", 2), "metric_min"], summary.loc[("fedavg", 2), "metric_max"]) == (0.4, 0.6)
    assert summary.loc[("feedsign", 2), "metric_mean"] == pytest.approx(0.3)
    assert summary.loc[("feedsign", 2), "n_runs"] == 2
    assert summary.loc[("fedavg", 4), "bits_up_cum_mean"] == 1000 * CLIENTS * 4


def test_convergence_draws_the_summary_a_panel_per_model_and_refuses_two_partitions(
    study: list[Path], tmp_path: Path
) -> None:
    runs, curves = run_tables(study)
    summary = tables.curve_summary_table(curves)
    drawn = plots.convergence(summary, curves, "round", tmp_path / "one.png")
    (line,) = [ln for ln in drawn.figure.axes[0].get_lines() if ln.get_label() == "fedavg (n=2)"]
    assert list(line.get_xdata()) == [0, 2, 4] and list(line.get_ydata()) == pytest.approx([0.2, 0.5, 0.6])
    other = curves.assign(model="other", run_dir=curves["run_dir"] + "-other", parameters=10)
    sizes = pd.concat([curves, other])
    both = tables.curve_summary_table(sizes, ["parameters"])
    # By size: "other" (10 weights) before "tiny" (1000).
    drawn = plots.convergence(both, sizes, "round", tmp_path / "x.png")
    assert drawn.data["panels"] == ["other", "tiny"]
    assert [ax.get_title() for ax in drawn.figure.axes] == ["other", "tiny"]
    with pytest.raises(ValueError, match="lacks the models"):
        plots.convergence(both, sizes, "round", tmp_path / "x.png", facet_order=["tiny"])
    two = pd.concat([curves, curves.assign(partition="other")])
    with pytest.raises(ValueError, match="settings"):
        plots.convergence(summary, two, "round", tmp_path / "x.png")
    assert [s["model"] for s, _ in tables.iter_settings(sizes)] == ["other", "tiny"]


def test_final_metric_bar_writes_png_and_pdf(study: list[Path], tmp_path: Path) -> None:
    png, pdf = plots.final_metric_bar(tables.final_metric_table(run_tables(study)[0]), tmp_path / "bar.png")
    _nonempty(png, b"\x89PNG")
    _nonempty(pdf, b"%PDF")


def test_method_colours_are_fixed_and_stable() -> None:
    assert plots.method_color("fedavg") == plots.METHOD_COLORS["fedavg"]
    unknown: Any = plots.method_color("some-new-method")
    assert unknown == plots.method_color("some-new-method") and unknown in plots.FALLBACK_COLORS
    assert plots.family_style("zo")["linestyle"] != plots.family_style("fo")["linestyle"]


def test_robustness_figure_and_table_separate_fractions_and_rules(tmp_path: Path) -> None:
    """Runs that differ only in Byzantine fraction and rule are separate table rows, and the figure
    draws them (diverged runs marked and named in the caption)."""
    dirs = [
        write_run(
            tmp_path,
            "fedavg",
            0,
            [0.5, final],
            status=status,
            byz_frac=frac,
            aggregator=agg,
            attack="gaussian" if frac else "none",
            name=f"f{frac}-{agg}",
        )
        for frac, agg, final, status in [
            (0.0, "mean", 0.8, "ok"),
            (0.4, "mean", 0.3, "ok"),
            (0.0, "median", 0.78, "ok"),
            (0.4, "median", 0.75, "ok"),
            (0.6, "median", 0.2, "diverged"),
        ]
    ]
    runs, _ = run_tables(dirs)
    table = tables.final_metric_table(runs)
    ok = table[table["n_seeds"] > 0]
    assert len(ok) == 4  # four (fraction, rule) cells with a finished run
    got = {(r["byz_frac"], r["aggregator"]): r["final_mean"] for r in ok.to_dict("records")}
    assert got[(0.4, "mean")] == pytest.approx(0.3) and got[(0.4, "median")] == pytest.approx(0.75)
    drawn = plots.robustness(table, tables.pretrained_table(runs), runs, tmp_path / "fig" / "robustness.png")
    png, pdf = drawn
    assert png.stat().st_size > 5000 and pdf.stat().st_size > 2000
    (ax,) = [a for a in drawn.figure.axes if a.get_visible()]
    (median,) = [c for c in ax.containers if c.get_label() == "median"]
    assert list(median.lines[0].get_ydata()) == pytest.approx([0.78, 0.75])
    assert drawn.data["pretrained"] == pytest.approx(0.5)
    assert "fedavg/median at 0.6 seed 0" in " ".join(t.get_text() for t in drawn.figure.texts).replace(
        "\n", " "
    )
