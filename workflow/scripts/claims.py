"""Snakemake script: the main and study tables -> the claims table (each paper's claim, our evidence,
a verdict)."""

import sys

from zofo.analysis import claims

log = open(snakemake.log[0], "w")  # noqa: F821, SIM115 (snakemake injects it; see tables/runs.py)
sys.stderr = log
sm = snakemake  # noqa: F821

evidence, model = claims.read_evidence(dict(sm.input.items()))
print(f"main-study claims read the model {model}", file=log)
table = claims.claims_table(evidence)
claims.write_claims(table, sm.output.csv, sm.output.md)
print(table.to_string(), file=log)
