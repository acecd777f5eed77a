"""Shim of rule bench (workflow/rules/bench.smk): `zofo bench` with its defaults, writing into the rule's
output folders, its report to the job's log."""

import sys

# Not a `with` block: the traceback of an uncaught exception must still reach the log.
log = open(snakemake.log[0], "w")  # noqa: F821, SIM115 (snakemake injects it)
sys.stdout = sys.stderr = log

from zofo.bench import BenchOptions, bench  # noqa: E402

opts = BenchOptions(assets_dir=str(snakemake.params.assets))  # noqa: F821
print(bench(opts, snakemake.params.out, snakemake.params.figures), end="")  # noqa: F821
