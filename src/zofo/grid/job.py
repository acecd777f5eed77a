"""Workflow jobs: the job's log (``job_log``, for every rule's script) and one run as a job
(``run_job``): what the run rule's script (``workflow/scripts/run.py``) hands over from Snakemake (the
run's config mapping, the job's threads and GPUs) turned into a run folder."""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

import yaml

from zofo.grid.gpu_slots import bind_job_gpu


@contextlib.contextmanager
def job_log(path: str | Path) -> Iterator[TextIO]:
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


def run_job(
    cfg: Mapping[str, Any],
    out_dir: str | Path,
    *,
    threads: int,
    gpus: int,
    lock_root: str | Path,
    log: TextIO,
) -> Path:
    """Run the experiment ``cfg`` (a RunConfig mapping) into ``out_dir`` as a job Snakemake granted
    ``threads`` threads and ``gpus`` cards; returns the folder.

    The run computes with the job's threads, and its recorded config says so (``threads`` replaces the
    mapping's). A granted card is claimed before anything starts CUDA (zofo.grid.gpu_slots) and held
    until the run ends. The resolved config is written beside the results, so that
    ``zofo run <out>/config.yaml`` repeats the run by hand.
    """
    slot = bind_job_gpu(
        gpus,
        str(cfg.get("device", "")),
        lock_root,
        os.environ,
        log=lambda line: print(line, file=log, flush=True),
    )
    try:
        # Imported once the card is bound: nothing below may have started CUDA before.
        from zofo.core.config import RunConfig
        from zofo.engine.loop import run
        from zofo.engine.record import atomic_write_text

        run_cfg = RunConfig.from_dict({**cfg, "threads": int(threads)})
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.yaml", yaml.safe_dump(run_cfg.to_dict(), sort_keys=False))
        return run(run_cfg, out, progress=True)
    finally:
        if slot is not None:
            slot.release()
