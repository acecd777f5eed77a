"""A run's checkpoint: the global model after an evaluated round, the method's state, the rows and
counters so far. A killed run resumes from it and ends with the same results as an uninterrupted one;
a run that ends (finished, diverged, failed) deletes it: only an interrupted run can be resumed."""

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
from zofo.engine.record import CHECKPOINT, write_error

__all__ = ["CHECKPOINT", "load_checkpoint", "remove_checkpoint", "save_checkpoint"]


def save_checkpoint(out_dir: Path, state: Mapping[str, Any]) -> None:
    """Write the checkpoint beside the results, atomically (a kill mid-write leaves the previous one);
    ResultsWriteError when it cannot be written (a full disk)."""
    path = out_dir / CHECKPOINT
    try:
        fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{CHECKPOINT}.")
    except OSError as e:
        raise write_error(path, e) from None
    os.close(fd)
    try:
        torch.save(dict(state), tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise write_error(path, e) from None
    except RuntimeError as e:
        # torch reports a failed write (a full disk) as a RuntimeError with its own C++ context.
        raise write_error(path, OSError(str(e).strip().splitlines()[-1])) from None
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


def remove_checkpoint(out_dir: Path) -> None:
    """Delete the run's checkpoint (a model's weights can take gigabytes) once the run has ended."""
    (out_dir / CHECKPOINT).unlink(missing_ok=True)
