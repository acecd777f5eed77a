"""A run's checkpoint: the global model after an evaluated round, the method's state, the rows and
counters so far. A killed run resumes from it and ends with the same results as an uninterrupted one."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from zofo.core.config import RunConfig
from zofo.core.device import restore_location
from zofo.core.errors import ZofoError

CHECKPOINT = "checkpoint.pt"


def save_checkpoint(out_dir: Path, state: Mapping[str, Any]) -> None:
    """Write the checkpoint beside the results, atomically (a kill mid-write leaves the previous one)."""
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{CHECKPOINT}.")
    os.close(fd)
    try:
        torch.save(dict(state), tmp)
        os.replace(tmp, out_dir / CHECKPOINT)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    print(f"zofo: checkpoint at round {state['round']}", file=sys.stderr, flush=True)


def load_checkpoint(
    out_dir: Path, cfg: RunConfig, device: torch.device | str = "cpu"
) -> dict[str, Any] | None:
    """The run folder's checkpoint if it belongs to this config, None if there is none. What was saved
    from an accelerator is loaded onto ``device`` (a run may resume on another GPU, or the CPU)."""
    path = out_dir / CHECKPOINT
    if not cfg.checkpoint or not path.is_file():
        return None
    # Our own file, written above: not limited to weights.
    state = torch.load(path, map_location=restore_location(torch.device(device)), weights_only=False)
    if state["config_hash"] != cfg.hash():
        raise ZofoError(
            f"{path} belongs to another configuration (config hash {state['config_hash']}, this run "
            f"{cfg.hash()}); delete it or write this run to another folder"
        )
    print(f"zofo: resuming {out_dir} after round {state['round']}", file=sys.stderr, flush=True)
    return state
