"""The summary of ``zofo bench``: Markdown tables per section, the goals, and the scaling figure.

On a GPU the tables print absolute times (the device's name is in the header); on the CPU they print
ratios (and the generators' rates, which are what those rows measure), since seconds there depend on
whatever else runs on the machine. The CSV keeps every number either way.
"""

from __future__ import annotations

import math
import os
import platform
import re
import textwrap
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
import torch

from zofo.bench.common import RANDOM_NOTE, SHARES, cpu_name, device_name
from zofo.bench.models import LOSS_TEXT
from zofo.bench.options import PIPELINE_SECTIONS, BenchOptions, format_layers, format_shapes

# Summary sections: title, what the ratio means, measures (in order).
SECTIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "a, b. Step cost",
        "A ZO step (zofo's SeededDirections, lean and fast; torch's generator, and the portable one as "
        "*_philox) and a MeZO-style reference step, each against the two forward passes every two-point "
        "step needs (forward_pair, the floor); the reference also against zofo's steps.",
        (
            "forward_pair",
            "zo_step_lean",
            "zo_step_fast",
            "zo_step_lean_philox",
            "zo_step_fast_philox",
            "mezo_reference_step",
        ),
    ),
    (
        "c. FeedSign, clients sharing the step seed",
        "Seconds per client-step. shared: z generated once per step for all clients (zofo's fast-mode "
        "simulation); fresh: each client regenerates z once (a client on its own device).",
        ("feedsign_client_shared", "feedsign_client_fresh"),
    ),
    (
        "d. Peak memory",
        "Peak resident set (MB) of a fresh child process per kind, against inference.",
        ("peak_rss_inference", "peak_rss_zo_lean", "peak_rss_zo_fast", "peak_rss_fo_adamw"),
    ),
    (
        "e. FedKSeed server update",
        "Applying only the last round's pool change (incremental, zofo's default) vs rebuilding from w0 "
        "with the whole pool (the paper's server).",
        ("fedkseed_incremental", "fedkseed_rebuild"),
    ),
    (
        "f. Growth with model size",
        "Random-init Llamas of growing width (timing only): the floor and the fast ZO step.",
        ("growth_forward_pair", "growth_zo_step_fast"),
    ),
    (
        "f. FeedSign against the number of clients",
        "Seconds per client-step on the first model and shape, against its forward_pair.",
        ("scaling_feedsign_shared", "scaling_feedsign_fresh"),
    ),
)


# The bench's goals, each a ratio of two measurements of this run:
# (title, model or None = the first packaged model measured, shape or "-", measure, ratio_of,
#  "<=" or ">=", target). A ratio the run did not measure is listed as not measured.
GOALS: tuple[tuple[str, str, str, str, str, float], ...] = (
    ("lean ZO step / floor", "16x64", "zo_step_lean", "forward_pair", "<=", 1.75),
    ("fast ZO step / floor", "16x64", "zo_step_fast", "forward_pair", "<=", 1.25),
    ("MeZO-style reference / lean step", "1x64", "mezo_reference_step", "zo_step_lean", ">=", 2.0),
    ("MeZO-style reference / fast step", "1x64", "mezo_reference_step", "zo_step_fast", ">=", 2.0),
    ("MeZO-style reference / lean step", "16x64", "mezo_reference_step", "zo_step_lean", ">=", 1.5),
    ("MeZO-style reference / fast step", "16x64", "mezo_reference_step", "zo_step_fast", ">=", 1.5),
    (
        "FeedSign, clients sharing z: per client-step / floor",
        "16x64",
        "feedsign_client_shared",
        "forward_pair",
        "<=",
        1.2,
    ),
    (
        "FeedSign, clients sharing z: per client-step / floor",
        "1x64",
        "feedsign_client_shared",
        "forward_pair",
        "<=",
        1.2,
    ),
    ("FedKSeed server: rebuild / incremental", "-", "fedkseed_rebuild", "fedkseed_incremental", ">=", 2.0),
    ("peak memory, lean ZO / inference", "16x64", "peak_rss_zo_lean", "peak_rss_inference", "<=", 1.15),
)
GOAL_MODEL = "smollm2-135m"

# The goals of sections startup, dag, throughput, each the current tree's ratio to the baseline's:
# (title, measure, layers, "<=" or ">=", target).
PIPELINE_GOALS: tuple[tuple[str, str, str, str, float], ...] = (
    (
        "FeedSign on the 1-block model, default config: estimates/s, current / baseline",
        "throughput_feedsign_default",
        "1",
        ">=",
        3.0,
    ),
)
# Rows of the start-up and DAG table: measure, what it is.
PIPELINE_TIMES: tuple[tuple[str, str], ...] = (
    (
        "startup_fixed",
        "a run's fixed cost: process start to its first training step (1-round `zofo run` of the default "
        "FeedSign config, round-0 evaluation included)",
    ),
    ("startup_eval0", "of which the round-0 evaluation"),
    ("import_engine_loop", "`import zofo.engine.loop` in a fresh interpreter"),
    ("dag_dry_run", "`snakemake -n -q --cores 2`: the workflow's DAG build (config/config.yaml)"),
)


def goal_met(ratio: float, op: str, target: float) -> str:
    """ "yes" or "no" for a measured ratio against its goal (``op`` "<=" or ">="), "not measured" for NaN."""
    if math.isnan(ratio):
        return "not measured"
    return "yes" if (ratio <= target if op == "<=" else ratio >= target) else "no"


def goals_table(df: pd.DataFrame, model: str = GOAL_MODEL) -> pd.DataFrame:
    """One row per goal: the measured ratio on ``model`` and whether it meets the target."""
    out = []
    for title, shape, measure, of, op, target in GOALS:
        hit = df[
            (df["model"] == model)
            & (df["shape"] == shape)
            & (df["measure"] == measure)
            & (df["ratio_of"] == of)
        ]
        ratio = float(hit["ratio"].iloc[0]) if len(hit) else math.nan
        met = goal_met(ratio, op, target)
        out.append(
            {
                "goal": title,
                "shape": shape,
                "target": f"{op} {target:g}",
                "measured": "" if math.isnan(ratio) else f"{ratio:.3g}",
                "met": met,
            }
        )
    return pd.DataFrame(out)


def _fmt(x: float, unit: str) -> str:
    return "" if pd.isna(x) else f"{x:.4g} {unit}"


def _table(part: pd.DataFrame, show_seconds: bool = True) -> pd.DataFrame:
    """The rows of one packaged section as printed."""

    def value(s: float, m: float) -> str:
        if not pd.isna(s):
            return _fmt(s, "s") if show_seconds else ""
        return _fmt(m, "MB")

    table = pd.DataFrame(
        {
            "model": part["model"],
            "params": part["params"].map(lambda n: f"{int(n) / 1e6:.2f}M"),
            "shape": part["shape"],
            "clients": part["clients"].map(lambda n: "" if pd.isna(n) else str(int(n))),
            "measure": part["measure"],
            "value": [value(s, m) for s, m in zip(part["seconds"], part["rss_mb"], strict=True)],
            "ratio": part["ratio"].map(lambda r: "" if pd.isna(r) else f"{r:.3g}"),
            "ratio of": part["ratio_of"].fillna(""),
            # the header lists the random-init models once
            "note": part["note"].fillna("").str.replace(RANDOM_NOTE, "", regex=False).str.strip("; "),
        }
    )
    if (table["clients"] == "").all():
        table = table.drop(columns="clients")
    return table


def _rate(x: float) -> str:
    return "" if pd.isna(x) else f"{x:.3g}"


def generator_table(df: pd.DataFrame) -> pd.DataFrame:
    """One line per device and dtype: normals per second of each generator, GB/s, and the ratios."""
    part = df[df["measure"].isin(("copy", "gen_torch", "gen_philox", "gen_philox_torch_ops"))]
    out = []
    for (device, dtype), g in part.groupby(["device", "dtype"], sort=False):

        def pick(measure: str, of: str = "", g: pd.DataFrame = g) -> pd.Series | None:
            hit = g[(g["measure"] == measure) & (g["ratio_of"].fillna("") == of)]
            return hit.iloc[0] if len(hit) else None

        copy, torch_row, philox_row = pick("copy"), pick("gen_torch", "copy"), pick("gen_philox", "copy")
        vs_torch = pick("gen_philox", "gen_torch")
        ops = pick("gen_philox_torch_ops", "gen_philox")
        if copy is None or torch_row is None or philox_row is None or vs_torch is None:
            continue
        out.append(
            {
                "device": device,
                "dtype": dtype,
                "normals": f"{int(copy['items']):,}",
                "philox normals/s": _rate(philox_row["items"] / philox_row["seconds"]),
                "torch normals/s": _rate(torch_row["items"] / torch_row["seconds"]),
                "philox / torch": f"{vs_torch['ratio']:.3g}",
                "philox GB/s written": _rate(philox_row["gb_s"]),
                "torch GB/s written": _rate(torch_row["gb_s"]),
                "copy GB/s (read + write)": _rate(copy["gb_s"]),
                "philox / copy": f"{philox_row['ratio']:.3g}",
                "torch / copy": f"{torch_row['ratio']:.3g}",
                "philox torch ops / philox": "" if ops is None else f"{ops['ratio']:.3g}",
            }
        )
    return pd.DataFrame(out)


def _cell(part: pd.DataFrame, measure: str, of: str = "") -> pd.Series | None:
    hit = part[(part["measure"] == measure) & (part["ratio_of"].fillna("") == of)]
    return hit.iloc[0] if len(hit) else None


def _ratio_or_skip(part: pd.DataFrame, measure: str, of: str) -> str:
    row = _cell(part, measure, of)
    if row is not None:
        return f"{row['ratio']:.3g}"
    skipped = _cell(part, measure)
    return "skipped" if skipped is not None and str(skipped["note"]).startswith("skipped") else ""


def sizes_tables(df: pd.DataFrame, gpu: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(step cost per size and shape, memory and FedKSeed per size) of the sizes section."""
    part = df[df["model"].str.startswith("opt-")]
    steps, memory = [], []
    measures = sorted({m for m in part["measure"] if m.startswith("zo_step_")})
    for (model, shape), g in part.groupby(["model", "shape"], sort=False):
        floor = _cell(g, "forward_pair")
        if shape == "-" or floor is None:
            continue
        row: dict[str, object] = {
            "model": model,
            "params": f"{int(g['params'].iloc[0]) / 1e9:.3g}B",
            "shape": shape,
        }
        if gpu:
            row["2 forwards"] = "" if pd.isna(floor["seconds"]) else f"{floor['seconds'] * 1e3:.3g} ms"
        for m in measures:
            row[m.removeprefix("zo_step_").replace("_", " ") + " / 2 fwd"] = _ratio_or_skip(
                g, m, "forward_pair"
            )
        steps.append(row)
    for model, g in part.groupby("model", sort=False):
        row = {"model": model, "params": f"{int(g['params'].iloc[0]) / 1e9:.3g}B"}
        prefix = "peak_device_" if (g["measure"] == "peak_device_inference").any() else "peak_rss_"
        inf = _cell(g, prefix + "inference")
        if inf is not None:
            row["memory shape"] = inf["shape"]
            unit = inf["device_mb"] if prefix == "peak_device_" else inf["rss_mb"]
            row["inference peak"] = f"{unit / 1024:.3g} GiB"
            fits = []
            for kind, label in (("zo_lean", "ZO lean"), ("zo_fast", "ZO fast"), ("fo_adamw", "FO AdamW")):
                row[f"{label} / inference"] = _ratio_or_skip(g, prefix + kind, prefix + "inference")
                if prefix == "peak_device_":
                    hit = _cell(g, prefix + kind)
                    if hit is not None and not pd.isna(hit["device_mb"]):
                        fits.append(f"{label}: {'yes' if hit['device_mb'] <= 78 * 1024 else 'no'}")
                    elif hit is not None:
                        fits.append(f"{label}: no (not tried or out of memory)")
            if fits:
                row["fits 80 GB"] = ", ".join(fits)
        reb = _cell(g, "fedkseed_rebuild", "fedkseed_incremental")
        row["FedKSeed rebuild / incremental"] = (
            f"{reb['ratio']:.3g}" if reb is not None else _ratio_or_skip(g, "fedkseed_rebuild", "")
        )
        if gpu and reb is not None:
            inc = _cell(g, "fedkseed_incremental")
            row["FedKSeed incremental"] = f"{inc['seconds']:.3g} s" if inc is not None else ""
        memory.append(row)
    return pd.DataFrame(steps), pd.DataFrame(memory)


def _pipeline_rows(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["tree"].fillna("") != ""]


def _tree_row(part: pd.DataFrame, measure: str, tree: str, layers: str | None = None) -> pd.Series | None:
    hit = part[(part["measure"] == measure) & (part["tree"] == tree)]
    if layers is not None:
        hit = hit[hit["layers"].fillna("").astype(str) == layers]
    return hit.iloc[0] if len(hit) else None


def _failed(row: pd.Series | None) -> bool:
    return row is not None and str(row["note"]).startswith("failed")


def _ratio_to_baseline(part: pd.DataFrame, measure: str, layers: str | None = None) -> float:
    hit = part[(part["measure"] == measure) & (part["ratio_of"] == f"{measure}@baseline")]
    if layers is not None:
        hit = hit[hit["layers"].fillna("").astype(str) == layers]
    return float(hit["ratio"].iloc[0]) if len(hit) else math.nan


def pipeline_goals_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per pipeline goal: the measured ratio current / baseline and whether it meets the target."""
    part = _pipeline_rows(df)
    out = []
    for title, measure, layers, op, target in PIPELINE_GOALS:
        ratio = _ratio_to_baseline(part, measure, layers)
        compared = []
        for tree in ("current", "baseline"):
            row = _tree_row(part, measure, tree, layers)
            gen = re.search(r"zo\.generator is (\w+)", "" if row is None else str(row["note"]))
            if gen:
                compared.append(f"{gen.group(1)} ({tree})")
        met = goal_met(ratio, op, target)
        out.append(
            {
                "goal": title,
                "generators": " vs ".join(compared),
                "target": f"{op} {target:g}",
                "measured": "" if math.isnan(ratio) else f"{ratio:.3g}",
                "met": met,
            }
        )
    return pd.DataFrame(out)


def _seconds(row: pd.Series | None) -> str:
    if row is None:
        return ""
    if _failed(row):
        return "failed"
    return "" if pd.isna(row["seconds"]) else f"{row['seconds']:.3g} s"


def pipeline_times_table(df: pd.DataFrame) -> pd.DataFrame:
    """Start-up and DAG build: the median seconds of each tree and the ratio current / baseline."""
    part = _pipeline_rows(df)
    out = []
    for measure, what in PIPELINE_TIMES:
        cur, base = _tree_row(part, measure, "current"), _tree_row(part, measure, "baseline")
        if cur is None and base is None:
            continue
        ratio = _ratio_to_baseline(part, measure)
        out.append(
            {
                "measure": measure,
                "what": what,
                "current": _seconds(cur),
                "baseline": _seconds(base),
                "current / baseline": "" if math.isnan(ratio) else f"{ratio:.3g}",
            }
        )
    return pd.DataFrame(out)


def _split(row: pd.Series | None) -> str:
    if row is None or _failed(row):
        return ""
    shares = [row.get(f"share_{k}") for k in SHARES]
    if any(x is None or pd.isna(x) for x in shares):
        return "no profile"
    return " / ".join(f"{100 * x:.0f}" for x in shares)


def _estimates_rate(row: pd.Series | None) -> str:
    if row is None:
        return ""
    if _failed(row):
        return "failed"
    return f"{row['items'] / row['seconds']:.3g}"


def throughput_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per method and model size: estimates per second of each tree, the ratio current / baseline, and
    the split of each tree's profiled training time (percent)."""
    part = _pipeline_rows(df)
    part = part[part["measure"].str.startswith("throughput_")]
    out = []
    keys = part[["measure", "layers"]].astype(str).drop_duplicates().itertuples(index=False)
    for measure, layers in keys:
        cur, base = _tree_row(part, measure, "current", layers), _tree_row(part, measure, "baseline", layers)
        first = cur if cur is not None and not _failed(cur) else base
        ratio = _ratio_to_baseline(part, measure, layers)
        estimates = "" if first is None or pd.isna(first["items"]) else f"{first['items']:.0f}"
        out.append(
            {
                "method": measure.removeprefix("throughput_"),
                "layers": layers,
                "estimates per run": estimates,
                "current estimates/s": _estimates_rate(cur),
                "baseline estimates/s": _estimates_rate(base),
                "current / baseline": "" if math.isnan(ratio) else f"{ratio:.3g}",
                "current split %": _split(cur),
                "baseline split %": _split(base),
            }
        )
    table = pd.DataFrame(out)
    if len(table) and (table["baseline estimates/s"] == "").all():
        table = table.drop(columns=["baseline estimates/s", "current / baseline", "baseline split %"])
    return table


def pipeline_markdown(df: pd.DataFrame, opts: BenchOptions, header: Mapping[str, str]) -> list[str]:
    """The lines of the startup, dag and throughput part of the summary (none when they did not run)."""
    from zofo.analysis.tables import to_markdown

    part = _pipeline_rows(df)
    if part.empty:
        return []
    trees = []
    for tree in ("current", "baseline"):
        row = _tree_row(part, "tree", tree)
        if row is not None:
            note = str(row["note"])
            # Without a baseline its row's note is the sentence that says why.
            trees.append(note if note.startswith("Baseline") else f"{tree}: {note}")
    lines = [
        "",
        "## Start-up, DAG build and training throughput, current code against a baseline",
        "",
        "Whole `zofo` processes of each tree (`PYTHONPATH=<tree>/src`), interleaved (current, baseline, "
        f"current, ...): the median of {opts.pipeline_repeats} timed process"
        f"{'es' if opts.pipeline_repeats != 1 else ''} per tree and measure after {opts.pipeline_warmup} "
        f"untimed, each run at {opts.run_threads} torch thread{'s' if opts.run_threads != 1 else ''}. "
        f"Seconds are this machine's ({header.get('cpu', 'CPU')}; {header['machine']}) and include whatever "
        "else ran on it: quote the ratios, both sides of which were timed in this run.",
        "",
        "Trees: " + "; ".join(trees).rstrip(".") + ".",
    ]
    goals = pipeline_goals_table(part)
    if (goals["met"] != "not measured").any() or (part["measure"].str.startswith("throughput_")).any():
        lines += ["", "### Goal", "", to_markdown(goals).rstrip()]
    times = pipeline_times_table(part)
    if len(times):
        lines += ["", "### Start-up and DAG build", "", to_markdown(times).rstrip()]
    tp = throughput_table(part)
    if len(tp):
        lines += [
            "",
            "### Training throughput",
            "",
            "Two-point estimates per second of training: a run's estimates (local_steps_total) over its "
            "clients' and server's seconds (rounds.jsonl; evaluation excluded); "
            f"{opts.pipeline_model} cut to `layers` blocks, batch 8 x 24 tokens, 5 clients, fast mode, "
            f"eps 1e-3; FeedSign and ZO-FedSGD {opts.throughput_rounds} rounds, FedKSeed(-Pro) 1 round of "
            f"{opts.throughput_fedkseed_steps} local steps at K = 4096; zo.generator philox except "
            "feedsign-torch; feedsign_default: FeedSign with each tree's default generator. Split: the "
            "time of one more run under cProfile, from each round's start to its end, in forward passes / "
            "drawing directions / weight moves / the rest (zofo.bench.pipeline.split_profile; cProfile's "
            "own cost falls on the Python calls, so read it as where the time goes).",
            "",
            to_markdown(tp).rstrip(),
        ]
    failed = part[part["note"].fillna("").str.startswith("failed")]
    if len(failed):
        lines += ["", "Failed:"]
        for _, r in failed.iterrows():
            where = f" layers {r['layers']}" if str(r["layers"]) not in ("", "nan") else ""
            lines.append(f"- {r['measure']}{where}, {r['tree']}: {str(r['note']).removeprefix('failed: ')}")
    return lines


def options_text(opts: BenchOptions) -> str:
    """The options that shaped this run's rows (a section that did not run contributes none)."""
    sections = opts.run_sections
    parts = [f"sections {','.join(sections)}", f"device {opts.device}"]
    if "packaged" in sections:
        parts += [
            f"models {','.join(opts.models)}",
            f"clients {opts.clients}",
            f"scaling clients {','.join(map(str, opts.scaling_clients))}",
            f"growth widths {','.join(map(str, opts.growth_hidden))}",
        ]
    if "sizes" in sections:
        parts.append(
            f"sizes {','.join(opts.run_sizes) or 'none'} in {str(opts.torch_dtype).removeprefix('torch.')}"
        )
    if "packaged" in sections or "sizes" in sections:
        parts += [
            f"shapes {format_shapes(opts.shapes)}",
            f"generators {','.join(opts.generators)}",
            f"FedKSeed K {opts.fedkseed_k}, {opts.fedkseed_clients} clients x {opts.fedkseed_tau} steps x "
            f"{opts.fedkseed_rounds} rounds",
            f"memory {'on' if opts.memory else 'off'}",
        ]
    if "generators" in sections or "sizes" in sections:
        parts.append(f"normals per generator timing {opts.gen_numel or 'default (2^24 CPU, 2^28 CUDA)'}")
    if any(x in sections for x in PIPELINE_SECTIONS):
        parts += [
            f"baseline {opts.baseline or 'none'}",
            f"pipeline model {opts.pipeline_model}",
            f"pipeline repeats {opts.pipeline_repeats} after {opts.pipeline_warmup} untimed",
            f"run threads {opts.run_threads}",
        ]
    if "throughput" in sections:
        parts += [
            f"throughput methods {','.join(opts.throughput_methods)}",
            f"layers {','.join(format_layers(n) for n in opts.throughput_layers)}",
            f"FeedSign and ZO-FedSGD rounds {opts.throughput_rounds}",
            f"FedKSeed local steps {opts.throughput_fedkseed_steps}",
        ]
    parts += [f"max seconds per measure {opts.max_seconds:g}", f"seed {opts.seed}"]
    return "Options: " + "; ".join(parts) + "."


def summary_markdown(df: pd.DataFrame, opts: BenchOptions, header: Mapping[str, str]) -> str:
    """The Markdown summary: a header saying how it was measured, then one table per section."""
    from zofo.analysis.tables import to_markdown

    gpu = opts.on_cuda
    random_models = sorted(set(df.loc[df["note"].str.contains(RANDOM_NOTE, na=False, regex=False), "model"]))
    timer = "CUDA events on the GPU, time.perf_counter on the CPU" if gpu else "time.perf_counter"
    if any(x not in PIPELINE_SECTIONS for x in opts.run_sections):
        lines = [
            "# zofo bench",
            "",
            f"Measured in one process, one run ({header['when']}; {header['machine']}; "
            f"torch {torch.__version__}; zofo commit {header['commit']}). {opts.threads} torch threads; "
            f"every timing is the median of up to {opts.repeats} call{'s' if opts.repeats != 1 else ''} "
            f"after 1 warm-up ({timer}), each call with a new step seed. "
            "Quote the ratios: both sides of each were timed in this run, same process, threads, model and "
            "batch." + ("" if gpu else " Step times on the CPU are in bench.csv, not printed here."),
            "",
            f"Loss: {LOSS_TEXT}. Batches: random token ids, full attention masks; shape = batch x tokens.",
            "",
            "Random-init weights, used for timing and memory only: "
            + (", ".join(random_models) or "none")
            + ".",
            "",
            options_text(opts),
        ]
    else:
        # Only whole-process sections: none of the in-process timing conventions above applies.
        lines = [
            "# zofo bench",
            "",
            f"Measured in one run ({header['when']}; {header['machine']}; torch {torch.__version__}; zofo "
            f"commit {header['commit']}).",
            "",
            options_text(opts),
        ]
    packaged = df[~df["model"].str.startswith("opt-") & (df["model"] != "-") & (df["tree"].fillna("") == "")]
    if (packaged["model"] == GOAL_MODEL).any():
        lines += [
            "",
            "## Goals",
            "",
            f"The bench's targets on {GOAL_MODEL}, from the rows below.",
            "",
            to_markdown(goals_table(packaged)).rstrip(),
        ]
    for title, text, measures in SECTIONS:
        part = packaged[packaged["measure"].isin(measures)]
        if part.empty:
            continue
        table = _table(part, show_seconds=gpu)
        if (table["value"] == "").all():
            table = table.drop(columns="value")
        lines += ["", f"## {title}", "", text, "", to_markdown(table).rstrip()]
    gens = generator_table(df)
    if len(gens):
        lines += [
            "",
            "## Generators",
            "",
            "Normals per second of the portable generator (zofo.core.philox) and of torch's own generator on "
            "the same device (mt19937 on the CPU, cuRAND's Philox on CUDA), at the bench's threads; the "
            "bytes they write per second against a device-to-device copy (bytes read + written); the "
            "portable generator's plain torch ops, eager (no C kernel, no torch.compile), against it.",
            "",
            to_markdown(gens).rstrip(),
        ]
    steps, memory = sizes_tables(df, gpu)
    if len(steps) or len(memory):
        lines += [
            "",
            "## Sizes",
            "",
            f"OPT-shaped decoders, weights initialised from the config (timing and memory only) on "
            f"{header['device']} in {df.loc[df['model'].str.startswith('opt-'), 'dtype'].iloc[0]}. ZO step "
            "(SeededDirections estimate + update; mode, generator) against its two forwards.",
        ]
        if len(steps):
            lines += ["", to_markdown(steps).rstrip()]
        if len(memory):
            lines += [
                "",
                "Peak memory against inference ("
                + ("peak allocated in this process" if gpu else "peak RSS of child processes")
                + "); FedKSeed's server update, rebuild against incremental (lean, philox).",
                "",
                to_markdown(memory).rstrip(),
            ]
        skipped = df[df["note"].fillna("").str.startswith("skipped")]
        if len(skipped):
            lines += ["", "Skipped:"]
            for _, r in skipped.iterrows():
                why = r["note"].split(";")[0].removeprefix("skipped: ")
                lines.append(f"- {r['model']} {r['shape']} {r['measure']}: {why}")
    lines += pipeline_markdown(df, opts, header)
    return "\n".join(lines) + "\n"


def scaling_figure(df: pd.DataFrame, out_png: str | Path) -> tuple[Path, Path]:
    """Two panels: seconds per step against model size (floor and fast ZO step), and FeedSign's seconds
    per client-step against the number of clients (shared and fresh z, with the floor)."""
    from matplotlib.figure import Figure

    from zofo.analysis.figures import method_color, save, style

    floor_g = df[df["measure"] == "growth_forward_pair"].sort_values("params")
    step_g = df[df["measure"] == "growth_zo_step_fast"].sort_values("params")
    scaling = df[(df["ratio_of"] == "forward_pair") & df["measure"].str.startswith("scaling_feedsign_")]
    if floor_g.empty or scaling.empty:
        raise ValueError("the scaling figure needs growth_* and scaling_feedsign_* rows")
    first = scaling.iloc[0]
    floor_s = df[
        (df["measure"] == "forward_pair") & (df["model"] == first["model"]) & (df["shape"] == first["shape"])
    ]
    zo_color, floor_color = method_color("zo-fedsgd"), "0.35"
    with style():
        fig = Figure(figsize=(9.0, 3.5))
        left, right = fig.subplots(1, 2)
        left.plot(
            floor_g["params"], floor_g["seconds"], color=floor_color, marker="o", label="2 forwards (floor)"
        )
        left.plot(
            step_g["params"],
            step_g["seconds"],
            color=zo_color,
            linestyle="--",
            marker="^",
            label="ZO step, fast",
        )
        for _, r in step_g.iterrows():
            left.annotate(
                f"×{r['ratio']:.2f}",
                (r["params"], r["seconds"]),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=7.5,
            )
        left.set_xscale("log")
        left.set_yscale("log")
        left.set_xlabel("trainable parameters (random-init Llama)")
        left.set_ylabel("seconds per step")
        left.set_title(f"step cost vs model size · {floor_g['shape'].iloc[0]}")
        left.legend(loc="upper left")
        fs_color = method_color("feedsign")
        for measure, label, ls, face in (
            ("scaling_feedsign_shared", "FeedSign, z shared", "-", None),
            ("scaling_feedsign_fresh", "FeedSign, z per client", "--", "white"),
        ):
            s = scaling[scaling["measure"] == measure].sort_values("clients")
            kw = {"markerfacecolor": face} if face else {}
            right.plot(
                s["clients"], s["seconds"], color=fs_color, linestyle=ls, marker="o", label=label, **kw
            )
        if len(floor_s):
            right.axhline(
                float(floor_s["seconds"].iloc[0]), color=floor_color, linestyle=":", label="2 forwards"
            )
        clients = sorted(int(c) for c in scaling["clients"].dropna().unique())
        right.set_xticks(clients)
        right.set_ylim(bottom=0)
        right.set_xlabel("clients sharing the step seed")
        right.set_ylabel("seconds per client-step")
        right.set_title(f"FeedSign · {first['model']} · {first['shape']}")
        right.legend(loc="lower left")  # the curves sit above the floor: the bottom stays free
        threads, repeats = int(first["threads"]), int(first["repeats"])
        note = (
            f"zofo bench, one process: {threads} threads, median of {repeats} after 1 warm-up. Left: ×r = ZO "
            "step / its two forward passes. Right: per client-step; dotted: the two forward passes. "
            "Random-init models are for timing only."
        )
        fig.text(0.0, -0.02, "\n".join(textwrap.wrap(note, 150)), fontsize=7.5, va="top", ha="left")
        return save(fig, out_png)


def header_info(opts: BenchOptions) -> dict[str, str]:
    from zofo.engine.record import git_info, now

    git = git_info(Path(__file__).parent)
    commit = (git["commit"] or "unknown")[:10] + (" (dirty)" if git["dirty"] else "")
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}"
    device = device_name(opts.device)
    if opts.on_cuda:
        machine += f"; GPU: {device}"
    return {"when": now(), "machine": machine, "commit": commit, "device": device, "cpu": cpu_name()}


def write_outputs(
    df: pd.DataFrame, opts: BenchOptions, out_dir: str | Path, figures_dir: str | Path
) -> tuple[str, list[Path]]:
    """bench.csv and bench.md (atomically), and figures/scaling.{png,pdf} when the packaged section
    ran; returns the Markdown."""
    from zofo.engine.record import atomic_write_text

    md = summary_markdown(df, opts, header_info(opts))
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / "bench.csv", df.to_csv(index=False))
    atomic_write_text(out_dir / "bench.md", md)
    written = [out_dir / "bench.csv", out_dir / "bench.md"]
    if "packaged" in opts.run_sections:
        written += list(scaling_figure(df, Path(figures_dir) / "scaling.png"))
    return md, written
