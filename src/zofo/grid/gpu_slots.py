"""Which GPU a workflow job runs on, when Snakemake has only said how many jobs may hold one.

Snakemake limits concurrency by resources (``snakemake --resources gpu=N`` runs at most N jobs that
each ask for ``gpu=1``) but does not tell a local job *which* card is its own: nothing in Snakemake 9
sets ``CUDA_VISIBLE_DEVICES`` (snakemake/snakemake issue 281, "Handle GPU ids", is open). On Slurm the
executor plugin submits ``gpu=1`` as ``sbatch --gpus=1`` and Slurm sets ``CUDA_VISIBLE_DEVICES`` for
the job itself.

So a job that Snakemake granted a GPU claims one of the cards it can see by holding an OS file lock,
``<lock_root>/<host>/<card>.lock`` (``fcntl.flock``, exclusive), for as long as its process lives,
and sets ``CUDA_VISIBLE_DEVICES`` to that card before CUDA starts. The kernel drops the lock when the
process ends, however it ends, so a killed run never leaves a card marked busy. Snakemake still
decides how many jobs run at once; the lock only says which card each takes. A card index means
something only on one host and, inside a Slurm allocation, only in that allocation (every Slurm job
may see its own card as ``0``), so the lock folder is per host and per Slurm job.
"""

from __future__ import annotations

import fcntl
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from zofo.core.config import check_device_name
from zofo.core.errors import ConfigError

AUTO_DEVICES = ("cpu", "cuda")
VISIBLE = "CUDA_VISIBLE_DEVICES"


def gpus_for_device(device: str, auto_device: str = "cpu") -> int:
    """The GPUs a run of ``device`` asks the scheduler for: 1 for ``cuda`` and ``cuda:N``, 0 for ``cpu``
    and ``mps`` (Apple's one integrated GPU is not a schedulable card). ``auto`` picks a device where the
    run lands, which the workflow cannot see when it plans (a Slurm login node has no GPU), so the
    workflow config says what ``auto`` runs are scheduled as (``auto_device``)."""
    check_device_name(device)
    if auto_device not in AUTO_DEVICES:
        raise ConfigError("auto_device", auto_device, f"one of {list(AUTO_DEVICES)}")
    if device == "auto":
        device = auto_device
    return 1 if device.startswith("cuda") else 0


def count_cuda_devices() -> int:
    """The CUDA devices this machine shows, counted in a child process: counting in this one would
    start the CUDA driver, which reads ``CUDA_VISIBLE_DEVICES`` once, before a card is chosen."""
    out = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.cuda.device_count())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.strip().splitlines()[-1])


def visible_gpus(environ: Mapping[str, str], count: Callable[[], int] = count_cuda_devices) -> list[str]:
    """The cards a job may choose from: the entries of ``CUDA_VISIBLE_DEVICES`` when it is set (by
    Slurm, or by the user to keep some cards free; indices or UUIDs), else ``0 .. count() - 1``."""
    if VISIBLE in environ:
        return [c.strip() for c in environ[VISIBLE].split(",") if c.strip()]
    return [str(i) for i in range(count())]


def lock_dir(lock_root: str | Path, environ: Mapping[str, str]) -> Path:
    """The folder whose lock files stand for the cards of this host (and this Slurm allocation)."""
    scope = socket.gethostname()
    if environ.get("SLURM_JOB_ID"):
        scope += f"-slurm{environ['SLURM_JOB_ID']}"
    return Path(lock_root) / re.sub(r"[^A-Za-z0-9._-]", "_", scope)


@dataclass
class GpuSlot:
    """A claimed card: ``card`` is its entry in the visible list; the lock lasts while ``handle`` is
    open, i.e. until ``release()`` or the end of the process."""

    card: str
    path: Path
    handle: TextIO

    def release(self) -> None:
        self.handle.close()


def try_claim(directory: str | Path, cards: Sequence[str]) -> GpuSlot | None:
    """The first of ``cards`` no other process holds, now locked by this one; None when all are held."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for card in cards:
        path = directory / f"{re.sub(r'[^A-Za-z0-9._-]', '_', card)}.lock"
        handle = open(path, "a+")  # held open on purpose: the lock lives as long as the handle
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        # Who holds it, for a person looking at the folder; the lock itself is the flock.
        handle.truncate(0)
        handle.write(f"{os.getpid()} {socket.gethostname()}\n")
        handle.flush()
        return GpuSlot(card, path, handle)
    return None


def claim(
    directory: str | Path,
    cards: Sequence[str],
    *,
    poll_seconds: float = 2.0,
    log: Callable[[str], None] = lambda _: None,
) -> GpuSlot:
    """A free card among ``cards`` (not empty), waiting for one when every card is held (more GPU jobs
    started than cards, e.g. without ``--resources gpu=N``: they then take turns instead of sharing)."""
    waiting = False
    while True:
        slot = try_claim(directory, cards)
        if slot is not None:
            return slot
        if not waiting:
            log(f"every card of {list(cards)} is held by another job; waiting for one ({directory})")
            waiting = True
        time.sleep(poll_seconds)


def bind_job_gpu(
    gpus: int,
    device: str,
    lock_root: str | Path,
    environ: MutableMapping[str, str],
    *,
    count: Callable[[], int] = count_cuda_devices,
    log: Callable[[str], None] = lambda _: None,
) -> GpuSlot | None:
    """Give a workflow job the GPUs Snakemake granted it (``gpus``, its ``gpu`` resource), by setting
    ``CUDA_VISIBLE_DEVICES`` in ``environ`` before anything starts CUDA; the slot must stay referenced
    until the job ends.

    - ``gpus == 0``: the job sees no card, so a run with ``device: auto`` runs where it was scheduled
      (on the CPU) instead of on a card another job holds.
    - ``device: cuda:N``: the config chose the card; nothing is claimed or hidden.
    - otherwise: one free card among the visible ones is claimed (``claim``) and made the only one
      visible, so ``cuda`` inside the run is that card.
    """
    if gpus not in (0, 1):
        raise ConfigError("gpu", gpus, "0 or 1 (a run uses one card)")
    if gpus == 0:
        environ[VISIBLE] = ""
        return None
    if device.startswith("cuda:"):
        return None
    cards = visible_gpus(environ, count)
    if not cards:
        raise ConfigError("device", device, "cpu, or a machine where this job sees a GPU (it sees none)")
    slot = claim(lock_dir(lock_root, environ), cards, log=log)
    environ[VISIBLE] = slot.card
    log(f"GPU: card {slot.card} of {cards} ({slot.path})")
    return slot
