"""Tables and figures on hand-written run folders whose expected numbers are worked out by hand."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from zofo.analysis import figures as plots
from zofo.analysis import tables
from zofo.analysis.load import load_runs
from zofo.engine.record import RunWriter

FAMILY = {"fedavg": "fo", "feedsign": "zo", "zo-fedsgd": "zo"}
CLIENTS = 5
# Per client per round, fixed so the communication table has a known answer.
UP_BITS = {"fedavg": 1000, "feedsign": 1, "zo-fedsgd": 64}


def write_run(
    root: Path,
    method: str,
    seed: int,
    metrics: Sequence[float],
    *,
    status: str = "ok",
    lr: float = 1e-3,
    label: str = "",
    clients_per_round: int | None = None,
    eval_every: int = 2,
    rounds: int = 4,
    name: str | None = None,
    formula: tuple[int, int] | None = None,
) -> Path:
    """A run folder as the engine writes it: ``metrics[0]`` at round 0, then one every ``eval_every``.

    ``rounds`` is only the configured number (a diverged run writes fewer rows than it asks for).
    """
    config = {
        "model": {"name": "tiny"},
        "task": {"name": "toy"},
        "partition": {"name": "dirichlet", "num_clients": CLIENTS, "alpha": 0.5},
        "federation": {"rounds": rounds, "eval_every": eval_every, "clients_per_round": clients_per_round},
        "method": {"name": method, "params": {"lr": lr}},
        "seed": seed,
        "threads": 1,
        "label": label,
    }
    config_hash = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    out = root / (name or f"{method}-{label or 'x'}-s{seed}")
    writer = RunWriter(
        out,
        {
            "config": config,
            "config_hash": config_hash,
            "method": {"name": method, "family": FAMILY[method]},
            "formula_bits": None if formula is None else {"uplink": formula[0], "downlink": formula[1]},
        },
    )
    cohort = clients_per_round or CLIENTS
    cum = 0
    for i, m in enumerate(metrics):
        rnd = i * eval_every
        bits = UP_BITS[method] * cohort * eval_every if i else 0
        cum += bits
        writer.add_row(
            {
                "method": method,
                "family": FAMILY[method],
                "model": "tiny",
                "task": "toy",
                "partition": "dirichlet",
                "alpha": 0.5,
                "num_clients": CLIENTS,
                "seed": seed,
                "round": rnd,
                "metric_name": "accuracy",
                "metric": m,
                "bits_up": bits,
                "bits_down": bits,
                "bits_up_cum": cum,
                "bits_down_cum": cum,
                "label": label,
                "config_hash": config_hash,
            }
        )
    writer.finish(status)
    return out


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
    t = tables.final_metric_table(*load_runs(study)).set_index("method")
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


def test_markdown_formatting(study: list[Path]) -> None:
    formatted = tables.format_final_table(tables.final_metric_table(*load_runs(study)))
    assert formatted.loc[0, "final"] == "0.600 ± 0.141"
    assert formatted.loc[2, "final"] == "0.450 ± n/a"
    assert formatted.loc[0, "partition"] == "dirichlet (α=0.5)"
    md = tables.to_markdown(formatted)
    assert "| fedavg" in md and "0.600 ± 0.141" in md and "20 kbit" in md
    assert tables.pm(0.8123, 0.0101) == "0.812 ± 0.010"
    assert tables.format_bits(318_494_720) == "318 Mbit"


def test_group_with_only_diverged_runs_keeps_its_row(tmp_path: Path) -> None:
    runs = [write_run(tmp_path, "feedsign", s, [0.2, 0.1], status="diverged") for s in (0, 1)]
    t = tables.final_metric_table(*load_runs(runs))
    assert len(t) == 1
    assert (t.loc[0, "n_seeds"], t.loc[0, "n_diverged"]) == (0, 2)
    assert math.isnan(t.loc[0, "final_mean"])


def test_different_config_hash_for_one_seed_is_refused(tmp_path: Path) -> None:
    runs = [
        write_run(tmp_path, "fedavg", 0, [0.2, 0.5], lr=1e-3, name="a"),
        write_run(tmp_path, "fedavg", 0, [0.2, 0.7], lr=1e-2, name="b"),
    ]
    with pytest.raises(ValueError, match="different config_hash"):
        tables.final_metric_table(*load_runs(runs))


def test_seeds_with_different_configs_are_refused(tmp_path: Path) -> None:
    # Hashes differ anyway (they include the seed); the lr difference must still be caught.
    runs = [
        write_run(tmp_path, "fedavg", 0, [0.2, 0.5], lr=1e-3),
        write_run(tmp_path, "fedavg", 1, [0.2, 0.7], lr=1e-2),
    ]
    with pytest.raises(ValueError, match="method.params.lr"):
        tables.final_metric_table(*load_runs(runs))


def test_one_seed_in_two_folders_is_refused(tmp_path: Path) -> None:
    runs = [write_run(tmp_path, "fedavg", 0, [0.2, 0.5], name=n) for n in ("a", "b")]
    with pytest.raises(ValueError, match="counted 2 times"):
        tables.final_metric_table(*load_runs(runs))


def test_labels_separate_configs(tmp_path: Path) -> None:
    runs = [
        write_run(tmp_path, "fedavg", 0, [0.2, 0.5], lr=1e-3, label="lr1e-3"),
        write_run(tmp_path, "fedavg", 0, [0.2, 0.7], lr=1e-2, label="lr1e-2"),
    ]
    t = tables.final_metric_table(*load_runs(runs))
    assert sorted(t["label"]) == ["lr1e-2", "lr1e-3"]


def test_communication_table(tmp_path: Path) -> None:
    runs = [
        write_run(tmp_path, "fedavg", 0, [0.2, 0.5, 0.6], clients_per_round=2),
        write_run(tmp_path, "feedsign", 0, [0.2, 0.3, 0.4]),
        write_run(tmp_path, "feedsign", 1, [0.2, 0.5], status="diverged"),
    ]
    rows, _ = load_runs(runs)
    c = tables.communication_table(rows).set_index("method")
    assert c.loc["fedavg", "bits_up_per_client_round"] == 1000
    assert c.loc["fedavg", "bits_up_per_round"] == 2000
    assert c.loc["fedavg", "cohort_size"] == "2"
    assert c.loc["feedsign", "bits_up_per_client_round"] == 1
    assert c.loc["feedsign", "n_runs"] == 2
    # Given explicitly, cohort sizes win over meta.json.
    c2 = tables.communication_table(rows, cohort_sizes={str(runs[0]): 4}).set_index("method")
    assert c2.loc["fedavg", "bits_up_per_client_round"] == 500
    assert "1 kbit" in tables.to_markdown(tables.format_communication_table(c.reset_index()))


def test_communication_table_checks_counted_bits_against_the_formula(tmp_path: Path) -> None:
    runs = [
        write_run(tmp_path, "fedavg", 0, [0.2, 0.5], formula=(1000, 1000)),
        write_run(tmp_path, "feedsign", 0, [0.2, 0.3], formula=(1, 1)),
        write_run(tmp_path, "zo-fedsgd", 0, [0.2, 0.3]),  # no formula recorded: not checked
    ]
    c = tables.communication_table(load_runs(runs)[0]).set_index("method")
    assert c.loc["fedavg", "matches_formula"] is True and c.loc["feedsign", "matches_formula"] is True
    assert c.loc["zo-fedsgd", "matches_formula"] is None
    assert c.loc["feedsign", "up_vs_fedavg"] == 1 / 1000 and c.loc["zo-fedsgd", "up_vs_fedavg"] == 64 / 1000
    tables.check_communication(c.reset_index())

    # A method whose payload grew by one bit against its definition fails the check, by name.
    bad = write_run(tmp_path, "feedsign", 1, [0.2, 0.3], formula=(1, 1), name="one-bit-too-many")
    rows = pd.read_json(bad / "rounds.jsonl", lines=True)
    rows[["bits_up", "bits_up_cum"]] = rows[["bits_up", "bits_up_cum"]] * 2
    rows.to_json(bad / "rounds.jsonl", orient="records", lines=True)
    c = tables.communication_table(load_runs([runs[0], bad])[0])
    assert list(c.set_index("method")["matches_formula"]) == [True, False]
    with pytest.raises(ValueError, match="feedsign .*counted 2 up"):
        tables.check_communication(c)


def _nonempty(path: Path, magic: bytes) -> None:
    assert path.is_file() and path.stat().st_size > 1000
    assert path.read_bytes().startswith(magic)


@pytest.mark.parametrize("x", ["round", "bits_up_cum"])
def test_convergence_writes_png_and_pdf(study: list[Path], tmp_path: Path, x: str) -> None:
    rows, status = load_runs(study)
    png, pdf = plots.convergence(rows, x, tmp_path / "figs" / f"conv_{x}.png", "test", status=status)
    assert pdf == png.with_suffix(".pdf")
    _nonempty(png, b"\x89PNG")
    _nonempty(pdf, b"%PDF")


def test_convergence_draws_a_panel_per_model_and_refuses_two_partitions(
    study: list[Path], tmp_path: Path
) -> None:
    rows, _ = load_runs(study)
    sizes = pd.concat([rows, rows.assign(model="other", run_dir=rows["run_dir"] + "-other")])
    drawn = plots.convergence(sizes, "round", tmp_path / "x.png", facet_order=["tiny", "other"])
    assert drawn.data["panels"] == ["tiny", "other"]
    assert [ax.get_title() for ax in drawn.figure.axes] == ["tiny", "other"]
    with pytest.raises(ValueError, match="lacks the models"):
        plots.convergence(sizes, "round", tmp_path / "x.png", facet_order=["tiny"])
    other = rows.assign(partition="other")
    with pytest.raises(ValueError, match="settings"):
        plots.convergence(pd.concat([rows, other]), "round", tmp_path / "x.png")
    assert [s["model"] for s, _ in tables.iter_settings(sizes)] == ["other", "tiny"]


def test_final_metric_bar_writes_png_and_pdf(study: list[Path], tmp_path: Path) -> None:
    png, pdf = plots.final_metric_bar(tables.final_metric_table(*load_runs(study)), tmp_path / "bar.png")
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
    runs = []
    for frac, agg, final, status in [
        (0.0, "mean", 0.8, "ok"),
        (0.4, "mean", 0.3, "ok"),
        (0.0, "median", 0.78, "ok"),
        (0.4, "median", 0.75, "ok"),
        (0.6, "median", 0.2, "diverged"),
    ]:
        out = write_run(tmp_path, "fedavg", 0, [0.5, final], status=status, name=f"f{frac}-{agg}")
        rows = pd.read_json(out / "rounds.jsonl", lines=True)
        rows["byz_frac"], rows["aggregator"], rows["attack"] = frac, agg, "gaussian"
        rows.to_json(out / "rounds.jsonl", orient="records", lines=True)
        runs.append(out)
    rows, status = load_runs(runs)
    table = tables.final_metric_table(rows, status)
    ok = table[table["n_seeds"] > 0]
    assert len(ok) == 4  # four (fraction, rule) cells with a finished run
    got = {(r["byz_frac"], r["aggregator"]): r["final_mean"] for r in ok.to_dict("records")}
    assert got[(0.4, "mean")] == pytest.approx(0.3) and got[(0.4, "median")] == pytest.approx(0.75)
    png, pdf = plots.robustness(rows, tmp_path / "fig" / "robustness.png")
    assert png.stat().st_size > 5000 and pdf.stat().st_size > 2000
