"""Shim of rule run (workflow/rules/runs.smk): the job's config, threads and GPUs to zofo, its errors to
the job's log."""

from pathlib import Path

from zofo.grid.job import job_log, run_job

with job_log(snakemake.log[0]) as log:  # noqa: F821 (snakemake injects it)
    run_job(
        snakemake.params.cfg,  # noqa: F821
        Path(snakemake.output.meta).parent,  # noqa: F821
        threads=snakemake.threads,  # noqa: F821
        gpus=int(snakemake.resources.get("gpu", 0)),  # noqa: F821
        lock_root=Path(snakemake.config["results_dir"]) / ".gpu-locks",  # noqa: F821
        log=log,
    )
