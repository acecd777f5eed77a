"""Shim of rule prepare_model (workflow/rules/assets.smk): one packaged GGUF model converted to
safetensors with the job's threads, its errors to the job's log."""

from pathlib import Path

from zofo.grid.job import job_log

with job_log(snakemake.log[0]):  # noqa: F821 (snakemake injects it)
    import torch

    from zofo.assets.packaged import prepare_model

    torch.set_num_threads(snakemake.threads)  # noqa: F821
    prepare_model(snakemake.wildcards.name, Path(snakemake.output.weights).parent)  # noqa: F821
