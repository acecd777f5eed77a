"""Shim of rule bench (workflow/rules/bench.smk): `zofo bench` with its defaults, writing into the rule's
output folders, its report and errors to the job's log."""

from zofo.grid.job import job_log

with job_log(snakemake.log[0]) as log:  # noqa: F821 (snakemake injects it)
    from zofo.bench import BenchOptions, bench

    opts = BenchOptions(assets_dir=str(snakemake.params.assets))  # noqa: F821
    print(bench(opts, snakemake.params.out, snakemake.params.figures), end="", file=log)  # noqa: F821
