"""Snakemake script: the main and study tables -> the claims table (each paper's claim, our evidence,
a verdict)."""

from zofo.analysis import claims
from zofo.grid.job import job_log

with job_log(snakemake.log[0]) as log:  # noqa: F821 (snakemake injects it)
    sm = snakemake  # noqa: F821

    evidence, model = claims.read_evidence(dict(sm.input.items()))
    print(f"main-study claims read the model {model}", file=log)
    table = claims.claims_table(evidence)
    claims.write_claims(table, sm.output.csv, sm.output.md)
    print(table.to_string(), file=log)
