"""Study figures (heterogeneity, sweeps, one round vs many, cost, communication) drawn from the tables of
hand-written run folders.

Each test checks the files, the refusals, and something drawn that a wrong implementation would get
wrong: positions and heights read back from the Figure, compared with values worked out by hand.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fakes import make_run, run_tables
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.colors import same_color, to_rgb
from matplotlib.container import ErrorbarContainer
from matplotlib.lines import Line2D

from zofo.analysis import figures as plots
from zofo.analysis import tables
from zofo.analysis.figures.communication import NOT_REACHED_MARKER
from zofo.analysis.figures.style import PRETRAINED_LABEL
from zofo.analysis.load import grid_columns

CLIENTS = 10
INF = math.inf


def study_tables(
    root: Path, runs: Iterable[tuple[str, int, Sequence[float], dict[str, Any]]], axes: Sequence[str] = ()
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(final table, pretrained table, run table) of the runs (method, seed, metrics, make_run options),
    as the workflow's table steps make them."""
    dirs = [make_run(root, m, s, metrics, num_clients=CLIENTS, **kw) for m, s, metrics, kw in runs]
    runs_table, _ = run_tables(dirs, axes)
    final = tables.final_metric_table(runs_table, grid_columns(axes))
    return final, tables.pretrained_table(runs_table), runs_table


def assert_files(drawn: plots.Drawn) -> None:
    png, pdf = drawn  # unpacks like save()'s pair
    assert pdf == png.with_suffix(".pdf")
    assert png.stat().st_size > 5000 and png.read_bytes().startswith(b"\x89PNG")
    assert pdf.stat().st_size > 2000 and pdf.read_bytes().startswith(b"%PDF")


def caption(drawn: plots.Drawn) -> str:
    return " ".join(t.get_text() for t in drawn.figure.texts).replace("\n", " ")


def line(ax: Axes, label: str) -> Line2D:
    (found,) = [ln for ln in ax.get_lines() if ln.get_label() == label]
    return found


def ticks(ax: Axes) -> dict[str, float]:
    return {t.get_text(): float(x) for x, t in zip(ax.get_xticks(), ax.get_xticklabels(), strict=True)}


def near(x: float, target: float) -> bool:
    """Within the figures' sideways dodge (well under a tenth of a decade) on a log axis."""
    return abs(math.log10(x / target)) < 0.1


def errorbar_points(ax: Axes, color: str) -> int:
    """How many error bars of this colour the axes hold (one segment per point)."""
    n = 0
    for c in ax.containers:
        if isinstance(c, ErrorbarContainer):
            for coll in c.lines[2]:
                if same_color(coll.get_color()[0], color):
                    n += len(coll.get_segments())
    return n


# --------------------------------------------------------------------------------------------------
# heterogeneity

# Final metric per (method, alpha, seed); round 0 (pretrained) differs by seed so its mean is checkable.
HET_FINAL = {
    ("fedavg", 0.1): [0.50, 0.54, 0.58],
    ("fedavg", 1.0): [0.70, 0.72, 0.74],
    ("fedavg", INF): [0.80, 0.82, 0.84],
    ("feedsign", 0.1): [0.40],  # one seed: a point without an error bar
    ("feedsign", 1.0): [0.45, 0.55, 0.50],
    ("feedsign", INF): [0.60, 0.62, 0.64],
}
HET_START = [0.20, 0.25, 0.30]


@pytest.fixture
def het(tmp_path: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    runs = []
    for (method, alpha), finals in HET_FINAL.items():
        for seed, final in enumerate(finals):
            # A misleading middle evaluation, and one run evaluated once more than the others: the
            # final metric is the last evaluated round of each run, not a fixed round.
            middle = [0.99, 0.99] if (method, alpha, seed) == ("fedavg", 1.0, 2) else [0.99]
            runs.append((method, seed, [HET_START[seed], *middle, final], {"alpha": alpha}))
    # Diverged at its last evaluation with a flattering metric: named in the caption, never averaged.
    runs.append(("feedsign", 3, [0.2, 0.95], {"alpha": 1.0, "status": "diverged"}))
    return study_tables(tmp_path, runs)


def test_heterogeneity_means_iid_position_and_pretrained_line(het: Any, tmp_path: Path) -> None:
    drawn = plots.heterogeneity(*het, tmp_path / "figs" / "het.png")
    assert_files(drawn)
    (ax,) = drawn.figure.axes

    # iid sits right of the largest finite alpha, under the tick "iid".
    positions = ticks(ax)
    assert set(positions) == {"0.1", "1", "iid"}
    assert positions["iid"] > positions["1"] == 1.0
    assert drawn.data["iid_x"] == positions["iid"]

    # The solid line holds the finite alphas, the iid point is a separate marker at iid_x.
    fedavg = line(ax, "fedavg")
    assert list(fedavg.get_xdata()) == [0.1, 1.0]
    assert list(fedavg.get_ydata()) == pytest.approx([0.54, 0.72])
    iid_marks = [ln for ln in ax.get_lines() if list(ln.get_xdata()) == [positions["iid"]]]
    assert sorted(float(ln.get_ydata()[0]) for ln in iid_marks) == pytest.approx([0.62, 0.82])
    # The diverged seed (0.95) is not in feedsign's mean at alpha 1.
    assert list(line(ax, "feedsign").get_ydata()) == pytest.approx([0.40, 0.50])
    pts = drawn.data["points"].set_index(["method", "alpha"])
    assert pts.loc[("feedsign", 1.0), "sd"] == pytest.approx(0.05)  # sd of 0.45, 0.55, 0.50 (ddof=1)

    # Grey dashed pretrained level at the mean round-0 metric of the ok runs.
    start = np.mean([HET_START[s] for finals in HET_FINAL.values() for s in range(len(finals))])
    pre = line(ax, PRETRAINED_LABEL)
    assert pre.get_ydata()[0] == pytest.approx(start) and pre.get_linestyle() == "--"
    assert drawn.data["pretrained"]["tiny"] == pytest.approx(start)

    # Error bars: feedsign's one-seed point at alpha 0.1 has none.
    assert errorbar_points(ax, plots.method_color("feedsign")) == 2
    assert errorbar_points(ax, plots.method_color("fedavg")) == 3
    assert ax.get_xscale() == "log"

    text = caption(drawn)
    assert "feedsign α=1 seed 3 (diverged)" in text
    assert "10 clients" in text and "seeds 0,1,2" in text and "tiny · toy" in text
    assert "feedsign α=0.1 (n=1)" in text and "±1 sd" in text


def test_heterogeneity_one_panel_per_model(tmp_path: Path) -> None:
    runs = [
        (m, s, [start, final], {"model": model, "alpha": a})
        for model, start in (("small", 0.1), ("large", 0.3))
        for m in ("fedavg", "feedsign")
        for a in (0.5, INF)
        for s, final in enumerate((0.6, 0.7))
    ]
    drawn = plots.heterogeneity(*study_tables(tmp_path, runs), tmp_path / "het2.png")
    assert_files(drawn)
    axes = drawn.figure.axes
    assert [ax.get_title() for ax in axes] == ["large", "small"]
    assert [line(ax, PRETRAINED_LABEL).get_ydata()[0] for ax in axes] == pytest.approx([0.3, 0.1])


def test_heterogeneity_refuses_bad_input(het: Any, tmp_path: Path) -> None:
    final, pretrained, runs = het
    out = tmp_path / "x.png"
    with pytest.raises(ValueError, match="empty"):
        plots.heterogeneity(final.iloc[:0], pretrained, runs, out)
    with pytest.raises(ValueError, match="missing column.*final_sd"):
        plots.heterogeneity(final.drop(columns="final_sd"), pretrained, runs, out)
    with pytest.raises(ValueError, match="no run finished ok"):
        plots.heterogeneity(final, pretrained, runs.assign(status="failed"), out)
    with pytest.raises(ValueError, match="mix task"):
        plots.heterogeneity(final, pretrained, pd.concat([runs, runs.assign(task="other")]), out)
    # Two groups at one point (they differ in a column the figure does not show): not one line.
    with pytest.raises(ValueError, match="several groups at one point"):
        plots.heterogeneity(pd.concat([final, final.iloc[:1].assign(byz_frac=0.2)]), pretrained, runs, out)
    assert not out.exists()


# --------------------------------------------------------------------------------------------------
# sweep

K = "method.params.K"


def sweep_tables(root: Path, values: Iterable[float]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    runs = []
    for v in values:
        for seed in (0, 1):
            for method, base in (("fedavg", 0.6), ("feedsign", 0.4)):
                # Final metric = base + 0.01 * value + 0.02 * seed: means are base + 0.01 v + 0.01.
                final = base + 0.01 * v + 0.02 * seed
                params = {"lr": 1e-3, "K": v}
                runs.append(
                    (
                        method,
                        seed,
                        [0.2 + 0.1 * seed, final],
                        {"params": params, "name": f"{method}{v}s{seed}"},
                    )
                )
    return study_tables(root, runs, [K])


def test_sweep_log_axis_means_and_pretrained(tmp_path: Path) -> None:
    final, pretrained, runs = sweep_tables(tmp_path, [1, 4, 16])
    assert plots.swept_axis(final, grid_columns([K, "zo.eps"])) == K  # the axis whose value varies
    drawn = plots.sweep(final, pretrained, runs, K, tmp_path / "sweep.png", axis_label="FedKSeed K")
    assert_files(drawn)
    (ax,) = drawn.figure.axes
    assert drawn.data["log_x"] and ax.get_xscale() == "log"  # 1..16 spans more than 10x
    assert list(line(ax, "feedsign").get_xdata()) == [1, 4, 16]
    assert list(line(ax, "feedsign").get_ydata()) == pytest.approx(
        [0.4 + 0.01 * v + 0.01 for v in (1, 4, 16)]
    )
    assert list(line(ax, "fedavg").get_ydata()) == pytest.approx([0.6 + 0.01 * v + 0.01 for v in (1, 4, 16)])
    assert line(ax, PRETRAINED_LABEL).get_ydata()[0] == pytest.approx(0.25)  # (0.2 + 0.3) / 2
    assert errorbar_points(ax, plots.method_color("fedavg")) == 3
    assert ax.get_xlabel().startswith("FedKSeed K") and "FedKSeed K" in caption(drawn)


def test_sweep_linear_axis_and_refusals(tmp_path: Path) -> None:
    drawn = plots.sweep(*sweep_tables(tmp_path / "a", [2, 4, 8]), K, tmp_path / "sweep_lin.png")
    assert not drawn.data["log_x"] and drawn.figure.axes[0].get_xscale() == "linear"  # only 4x
    assert_files(drawn)
    final, pretrained, runs = sweep_tables(tmp_path / "b", [1, 100])
    out = tmp_path / "x.png"
    with pytest.raises(ValueError, match="missing column.*'eps'"):
        plots.sweep(final, pretrained, runs, "eps", out)
    not_a_number = final.assign(**{K: final[K].astype(object)})
    not_a_number.loc[0, K] = "large"
    with pytest.raises(ValueError, match=f"finite number in '{K}'"):
        plots.sweep(not_a_number, pretrained, runs, K, out)
    with pytest.raises(ValueError, match="empty"):
        plots.sweep(final.iloc[:0], pretrained, runs, K, out)
    with pytest.raises(ValueError, match="settings"):
        plots.sweep(final, pretrained, pd.concat([runs, runs.assign(model="other")]), K, out)
    with pytest.raises(ValueError, match="one swept value"):
        plots.swept_axis(final.assign(eps=final[K] / 2), [K, "eps"])


# --------------------------------------------------------------------------------------------------
# one round vs many

# (model, alpha) -> fedavg finals of seeds 0, 1, 2 and oneshot finals of seeds 0, 1 (its seed 2 diverged).
GAP_FED = {("s", 0.5): [0.70, 0.72, 0.74], ("s", INF): [0.80, 0.81, 0.82], ("l", 0.5): [0.9, 0.9, 0.9]}
GAP_ONE = {("s", 0.5): [0.60, 0.64], ("s", INF): [0.78, 0.80], ("l", 0.5): [0.85, 0.89]}
SIZES = {"s": 10**6, "l": 10**8}


def gap_tables(root: Path, alphas: Iterable[float] = (0.5, INF)) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(gap table, run table) of the study above."""
    runs = []
    for (model, alpha), finals in GAP_FED.items():
        if alpha not in alphas:
            continue
        cell = {"model": model, "alpha": alpha, "parameters": SIZES[model]}
        runs += [("fedavg", s, [0.2, f], cell) for s, f in enumerate(finals)]
        runs += [("oneshot", s, [0.2, f], cell) for s, f in enumerate(GAP_ONE[(model, alpha)])]
        runs.append(("oneshot", 2, [0.2, 0.99], {**cell, "status": "diverged"}))
    runs.append(("feedsign", 1, [0.2, 0.1], {"model": "s", "parameters": SIZES["s"]}))  # not in the gap
    final, _, run_table = study_tables(root, runs)
    return tables.gap_table(final, grid_columns([])), run_table


def test_gap_table_is_the_difference_of_group_means_with_its_standard_error(tmp_path: Path) -> None:
    gaps = gap_tables(tmp_path)[0].set_index(["model", "alpha"])
    assert sorted(gaps.index) == sorted(GAP_FED)  # feedsign has no partner: no cell of its own
    s = gaps.loc[("s", 0.5)]
    # fedavg: mean 0.72, sd 0.02 over 3 seeds; oneshot: mean 0.62, sd sqrt(0.0008) over 2 (seed 2 diverged).
    assert (s["fedavg_n"], s["oneshot_n"]) == (3, 2)
    assert s["gap"] == pytest.approx(0.10)
    # se^2 = 0.02^2 / 3 + 0.0008 / 2 = 0.0004 * 4 / 3
    assert s["gap_se"] == pytest.approx(math.sqrt(0.0004 * 4 / 3))
    assert gaps.loc[("l", 0.5), "gap"] == pytest.approx(0.03)
    assert gaps.loc[("l", 0.5), "parameters"] == 10**8


def test_oneshot_gap_draws_the_gap_table(tmp_path: Path) -> None:
    gaps, runs = gap_tables(tmp_path)
    drawn = plots.oneshot_gap(gaps, runs, tmp_path / "gap.png")
    assert_files(drawn)
    left, right = drawn.figure.axes
    # Left: gap vs size; the alpha-0.5 line holds both models.
    a05 = line(left, "α=0.5")
    assert [near(x, size) for x, size in zip(a05.get_xdata(), (1e6, 1e8), strict=True)] == [True, True]
    assert left.get_xscale() == "log"
    assert list(a05.get_ydata()) == pytest.approx([0.10, 0.03])
    assert {t.get_text() for t in left.texts} == {"s", "l"}
    # Error bars of two standard errors: s at alpha 0.5 spans 0.10 ± 2 x sqrt(0.0004 x 4 / 3).
    bars = [
        seg
        for c in left.containers
        if isinstance(c, ErrorbarContainer)
        for coll in c.lines[2]
        for seg in coll.get_segments()
    ]
    half = 2 * math.sqrt(0.0004 * 4 / 3)
    assert any(np.allclose(seg[:, 1], [0.10 - half, 0.10 + half]) for seg in bars)
    # Right: gap vs alpha per model; iid right of 0.5, line at 0 on both panels.
    positions = ticks(right)
    assert positions["iid"] > positions["0.5"]
    iid_s = [
        ln
        for ln in right.get_lines()
        if len(ln.get_xdata()) == 1 and near(ln.get_xdata()[0], positions["iid"])
    ]
    assert [float(ln.get_ydata()[0]) for ln in iid_s] == pytest.approx([0.81 - 0.79])
    for ax in (left, right):
        assert line(ax, plots.GAP_ZERO_LABEL).get_ydata()[0] == 0.0
    assert "oneshot s iid seed 2 (diverged)" in caption(drawn) and "±2 standard errors" in caption(drawn)


def test_oneshot_gap_single_alpha_and_refusals(tmp_path: Path) -> None:
    gaps, runs = gap_tables(tmp_path, alphas=(0.5,))
    drawn = plots.oneshot_gap(gaps, runs, tmp_path / "gap1.png")
    assert_files(drawn)
    right = drawn.figure.axes[1]
    # One alpha: each model is a single point on the right panel.
    xs = [list(line(right, m).get_xdata()) for m in ("s", "l")]
    assert [len(x) for x in xs] == [1, 1] and near(xs[0][0], 0.5) and near(xs[1][0], 0.5)
    assert xs[0][0] != xs[1][0]  # dodged apart, not on top of each other
    assert ticks(right) == {"0.5": 0.5}

    out = tmp_path / "x.png"
    with pytest.raises(ValueError, match="missing column.*'gap_se'"):
        plots.oneshot_gap(gaps.drop(columns="gap_se"), runs, out)
    with pytest.raises(ValueError, match="one positive number per model"):
        plots.oneshot_gap(gaps.assign(parameters=-1.0), runs, out)
    with pytest.raises(ValueError, match="empty"):
        plots.oneshot_gap(gaps.iloc[:0], runs, out)
    with pytest.raises(ValueError, match="both fedavg and oneshot"):
        plots.oneshot_gap(gaps.assign(gap=math.nan), runs, out)


# --------------------------------------------------------------------------------------------------
# cost


def cost_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "method": ["fedavg", "feedsign", "zo-fedsgd"],
            "family": ["fo", "zo", "zo"],
            "n_seeds": [3, 3, 1],
            "client_seconds_per_round_mean": [20.0, 0.5, 0.1],  # 200x: log
            "client_seconds_per_round_sd": [2.0, 0.05, math.nan],
            "server_seconds_per_round_mean": [0.5, 0.2, 0.01],  # 50x: linear (log only past 100x)
            "server_seconds_per_round_sd": [0.01, 0.02, math.nan],
            "peak_rss_mb_mean": [900.0, 600.0, 610.0],
            "peak_rss_mb_sd": [10.0, 5.0, math.nan],
            "model": "tiny",
            "task": "toy",
            "partition": "dirichlet",
            "alpha": 0.5,
            "label": "",
        }
    )


def test_cost_bars_scales_and_caption(tmp_path: Path) -> None:
    table = cost_table()
    drawn = plots.cost(table, tmp_path / "cost.png")
    assert_files(drawn)
    client, server, memory = drawn.figure.axes
    assert (client.get_xscale(), server.get_xscale(), memory.get_xscale()) == ("log", "linear", "linear")
    for ax, stem in (
        (client, "client_seconds_per_round"),
        (server, "server_seconds_per_round"),
        (memory, "peak_rss_mb"),
    ):
        bars = sorted(ax.patches, key=lambda p: p.get_y())
        # Bars in the table's order from the top (the y axis is inverted: row 0 at y = 0 on top).
        assert [b.get_width() for b in bars] == pytest.approx(list(table[f"{stem}_mean"]))
        assert all(
            same_color(b.get_facecolor()[:3], to_rgb(plots.method_color(m)))
            for b, m in zip(bars, table["method"], strict=True)
        )
        # Error bars for the two methods with three seeds, none for the one with one seed.
        assert sum(isinstance(c, ErrorbarContainer) for c in ax.containers) == 2
    assert client.yaxis_inverted()
    assert [t.get_text() for t in client.get_yticklabels()] == ["fedavg", "feedsign", "zo-fedsgd"]
    text = caption(drawn)
    assert "2 runs in parallel on 2 cores" in text and "indicative" in text and "process peak" in text
    assert "tiny · toy · partition dirichlet (α=0.5)" in text

    out = tmp_path / "x.png"
    with pytest.raises(ValueError, match="empty"):
        plots.cost(table.iloc[:0], out)
    with pytest.raises(ValueError, match="missing column.*peak_rss_mb_sd"):
        plots.cost(table.drop(columns="peak_rss_mb_sd"), out)


# --------------------------------------------------------------------------------------------------
# communication


def comm_frame(root: Path) -> pd.DataFrame:
    """communication_table of runs whose formulas the engine would have recorded; zo-fedsgd sends twice
    its formula's uplink."""
    per_client = {"fedavg": (1000, 2000), "feedsign": (1, 2), "zo-fedsgd": (128, 256)}
    formula = {"fedavg": (1000, 2000), "feedsign": (1, 2), "zo-fedsgd": (64, 256)}
    dirs = [
        make_run(
            root, m, s, [0.2, 0.5, 0.6], num_clients=CLIENTS, up_bits=up, down_bits=down, formula=formula[m]
        )
        for m, (up, down) in per_client.items()
        for s in (0, 1)
    ]
    return tables.communication_table(run_tables(dirs)[0])


def to_target_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "method": ["fedavg", "feedsign", "zo-fedsgd"],
            "family": ["fo", "zo", "zo"],
            "n_runs": [2, 2, 2],
            "n_reached": [2, 1, 0],
            "bits_up_to_target_mean": [4e4, 30.0, math.nan],
            "bits_up_to_target_sd": [1e3, math.nan, math.nan],
            "target": [0.55] * 3,
        }
    )


def test_communication_marks_formulas_and_mismatch(tmp_path: Path) -> None:
    comm = comm_frame(tmp_path)
    assert list(comm["method"]) == ["fedavg", "feedsign", "zo-fedsgd"]
    drawn = plots.communication(comm, tmp_path / "comm.png")
    assert_files(drawn)
    (ax,) = drawn.figure.axes
    assert ax.get_yscale() == "log"
    heights = sorted((round(p.get_x() + p.get_width() / 2, 3), p.get_height()) for p in ax.patches)
    assert [h for _, h in heights] == pytest.approx([1000, 2000, 1, 2, 128, 256])
    # A black tick at each formula value, centred on its bar; zo-fedsgd's uplink tick sits below its bar.
    formula_ticks = sorted(
        (round(float(np.mean(seg[:, 0])), 3), float(seg[0, 1]))
        for coll in ax.collections
        if isinstance(coll, LineCollection)
        for seg in coll.get_segments()
    )
    assert formula_ticks == [(x, f) for (x, _), f in zip(heights, [1000, 2000, 1, 2, 64, 256], strict=True)]
    assert drawn.data["mismatch"] == ["zo-fedsgd"]
    assert any(t.get_text() == "≠ formula" for t in ax.texts)
    assert "differ from the formula for: zo-fedsgd" in caption(drawn)
    assert "10 clients per round" in caption(drawn)


def test_communication_to_target_panel(tmp_path: Path) -> None:
    comm = comm_frame(tmp_path)
    comm["matches_formula"] = True
    drawn = plots.communication(comm, tmp_path / "comm_target.png", to_target=to_target_frame())
    assert_files(drawn)
    left, right = drawn.figure.axes
    assert not any(t.get_text() == "≠ formula" for t in left.texts)
    assert right.get_yscale() == "log"
    assert sorted(p.get_height() for p in right.patches) == pytest.approx([30.0, 4e4])
    marks = [ln for ln in right.lines if ln.get_marker() == NOT_REACHED_MARKER["marker"]]
    assert len(marks) == 1 and list(marks[0].get_xdata()) == [2]  # zo-fedsgd, the third: never reached
    (label,) = [t for t in right.texts if t.get_position()[0] == 2]
    assert label.get_text() == "0/2"
    assert {t.get_text() for t in right.texts} >= {"2/2", "1/2"}
    assert list(drawn.data["to_target"]["reached"]) == [True, True, False]
    assert "target metric value 0.55" in caption(drawn)

    out = tmp_path / "x.png"
    with pytest.raises(ValueError, match="empty"):
        plots.communication(comm.iloc[:0], out)
    with pytest.raises(ValueError, match="missing column.*formula_up"):
        plots.communication(comm.drop(columns="formula_up"), out)
    with pytest.raises(ValueError, match="to_target.*missing column.*n_reached"):
        plots.communication(comm, out, to_target=to_target_frame().drop(columns="n_reached"))
