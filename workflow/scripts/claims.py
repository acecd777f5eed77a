"""Snakemake shim: the main and study tables -> the claims table (each paper's claim, our evidence,
a verdict)."""

import sys

import pandas as pd

from zofo.analysis import claims

log = open(snakemake.log[0], "w")  # noqa: F821, SIM115 (snakemake injects it)
sys.stderr = log
sm = snakemake  # noqa: F821

studies = dict(sm.params.studies)  # evidence name -> study name
tables_dir = {name: path for name, path in zip(studies, sm.input.studies, strict=True)}
main = {
    "main": pd.read_csv(sm.input.main),
    "comm": pd.read_csv(sm.input.comm),
    "cost": pd.read_csv(sm.input.cost),
    "to_target": pd.read_csv(sm.input.to_target),
}
# A main study over model sizes speaks for the papers' claims at its largest model (the papers' claims
# are about the largest models they ran); the one-shot study covers how a gap changes with size.
model = claims.largest_model(main["main"])
print(f"main-study claims read the model {model}", file=log)
ev = claims.Evidence(
    **{name: frame[frame["model"].astype(str) == model] for name, frame in main.items()},
    **{name: pd.read_csv(path) for name, path in tables_dir.items()},
)
table = claims.claims_table(ev)
claims.write_claims(table, sm.output.csv, sm.output.md)
print(table.to_string(), file=log)
