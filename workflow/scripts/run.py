"""Snakemake shim: one run folder from the rule's resolved config (see workflow/rules/runs.smk)."""

import os
import sys
from pathlib import Path

import yaml

with open(snakemake.log[0], "w") as log:  # noqa: F821 (snakemake injects it)
    sys.stderr = log
    from zofo.grid.gpu_slots import bind_job_gpu

    # Before anything starts CUDA: the card this job holds (its lock lasts as long as this process).
    gpu_slot = bind_job_gpu(
        int(snakemake.resources.get("gpu", 0)),  # noqa: F821
        str(snakemake.params.cfg.get("device", "")),  # noqa: F821
        Path(snakemake.config["results_dir"]) / ".gpu-locks",  # noqa: F821
        os.environ,
        log=lambda line: print(line, file=log, flush=True),
    )

    from zofo.core.config import RunConfig
    from zofo.engine.loop import run
    from zofo.engine.record import atomic_write_text

    cfg = RunConfig.from_dict(snakemake.params.cfg)  # noqa: F821
    out = Path(snakemake.output.meta).parent  # noqa: F821
    out.mkdir(parents=True, exist_ok=True)
    # The resolved config beside the results: `zofo run <out>/config.yaml` repeats the run by hand.
    atomic_write_text(out / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    run(cfg, out, progress=True)
