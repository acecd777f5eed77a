"""The short table tests/gpu/check.sh prints last: device, the bench's ratios, the miniature's accuracy.

Usage: python tests/gpu/summary.py OUTDIR DEVICE (reads OUTDIR/bench.csv and OUTDIR/mini-*.jsonl).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import torch

# The ratios worth a line, by what they are a ratio of (measure prefixes shortened).
RATIO_OF = ("forward_pair", "peak_device_inference", "peak_rss_inference", "fedkseed_incremental")


def bench_lines(df: pd.DataFrame, device: str) -> list[str]:
    lines = []
    gen = df[df["measure"] == "gen_philox"]
    if device != "cpu":  # the GPU's rows; the CPU's are in bench.md
        gen = gen[gen["device"] != "cpu"]
    for _, r in gen.iterrows():
        lines.append(
            f"philox on {r['device']} {r['dtype']}: {r['items'] / r['seconds']:.3g} normals/s, "
            f"{r['ratio']:.3g} x {r['ratio_of']}"
        )
    for model, g in df[df["model"].str.startswith("opt-")].groupby("model", sort=False):
        cells = [
            f"{r['measure'].removeprefix('zo_step_').removeprefix('peak_device_').removeprefix('peak_rss_')}"
            f" {r['ratio']:.3g}"
            for _, r in g[g["ratio_of"].isin(RATIO_OF)].iterrows()
        ]
        skipped = g[g["note"].fillna("").str.startswith("skipped")]["measure"].tolist()
        tail = f"; skipped: {', '.join(skipped)}" if skipped else ""
        lines.append(f"{model}: " + ", ".join(cells) + tail)
    return lines


def miniature_lines(out: Path) -> list[str]:
    lines = []
    for method in ("feedsign", "fedavg"):
        path = out / f"mini-{method}.jsonl"
        if not path.exists():
            lines.append(f"miniature {method}: no result")
            continue
        rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
        first, last = rows[0], rows[-1]
        train = sum(r["client_seconds"] + r["server_seconds"] for r in rows)
        lines.append(
            f"miniature {method}: accuracy {first['metric']:.3f} -> {last['metric']:.3f} after "
            f"{last['round']} rounds, {train:.1f} s of training"
        )
    return lines


def main(out: Path, device: str) -> None:
    gpu = device != "cpu" and torch.cuda.is_available()
    print("device:", torch.cuda.get_device_name() if gpu else "CPU")
    if (out / "bench.csv").exists():
        df = pd.read_csv(out / "bench.csv", keep_default_na=False, na_values=[""])
        print("\n".join(bench_lines(df, device)))
    print("\n".join(miniature_lines(out)))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
