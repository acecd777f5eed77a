"""Shim of rule prepare_model (workflow/rules/assets.smk): one packaged GGUF model converted to
safetensors with the job's threads, its output to the job's log."""

import sys
from pathlib import Path

# Not a `with` block: the traceback of an uncaught exception must still reach the log.
log = open(snakemake.log[0], "w")  # noqa: F821, SIM115 (snakemake injects it)
sys.stdout = sys.stderr = log

import torch  # noqa: E402

from zofo.assets.packaged import prepare_model  # noqa: E402

torch.set_num_threads(snakemake.threads)  # noqa: F821
prepare_model(snakemake.wildcards.name, Path(snakemake.output.weights).parent)  # noqa: F821
