"""Snakemake shim: one run folder from the rule's resolved config (see workflow/rules/runs.smk)."""

import contextlib
import os
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import yaml


@contextlib.contextmanager
def job_log(path: str) -> Iterator[TextIO]:
    """The job's log as stderr while the job runs. An error that ends the job is written into the log,
    traceback and all, before the log closes: Snakemake deletes a failed job's outputs (the meta.json
    that said why) but keeps its log. stderr is the process's own again afterwards, so the error then
    also reaches Snakemake's console rather than a closed file."""
    with open(path, "w") as log:
        sys.stderr = log
        try:
            yield log
        except BaseException as e:
            traceback.print_exc(file=log)
            print(f"zofo: job failed: {type(e).__name__}: {e}", file=log, flush=True)
            raise
        finally:
            sys.stderr = sys.__stderr__


with job_log(snakemake.log[0]) as log:  # noqa: F821 (snakemake injects it)
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
