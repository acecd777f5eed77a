"""The results schema: one folder per run with ``meta.json`` and ``rounds.jsonl``, written atomically.

The schema is the contract between runs and tables/figures: any program that writes a run folder in
this form (another framework, another language) joins every table and figure. ``ROUND_COLUMNS`` lists
the per-evaluation-point columns with their dtypes; ``load_runs`` reads folders back into a typed
DataFrame and keeps runs whose status is not ``ok`` separate.

Every write goes to a temporary file in the same folder and is moved into place with ``os.replace``,
so a crash or kill never leaves a half-written file: a reader sees the old file or the new one.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

ROUND_COLUMNS: dict[str, str] = {
    "method": "string",
    "family": "string",
    "model": "string",
    "task": "string",
    "partition": "string",
    "alpha": "float64",
    "num_clients": "int64",
    "byz_frac": "float64",
    "attack": "string",
    "aggregator": "string",
    "seed": "int64",
    "round": "int64",
    "local_steps_total": "int64",
    "metric_name": "string",
    "scorer": "string",
    "metric": "float64",
    "eval_loss": "float64",
    "train_loss": "float64",
    "bits_up": "int64",
    "bits_down": "int64",
    "bits_up_cum": "int64",
    "bits_down_cum": "int64",
    # payloads the server rejected (malformed, non-finite, unexpected seed) since the last row / in all
    "rejected": "int64",
    "rejected_cum": "int64",
    "client_seconds": "float64",
    "server_seconds": "float64",
    "eval_seconds": "float64",
    "peak_rss_mb": "float64",
    # where the run computed (resolved, e.g. "cpu", "cuda:0"), the weights' precision, and the peak
    # memory torch allocated on the device since the run started (null on the CPU: see peak_rss_mb)
    "device": "string",
    "dtype": "string",
    "peak_device_mb": "float64",
    "label": "string",
    "config_hash": "string",
}
# Values of columns added after runs were first written, for rows that predate them (a run written
# before the server validated payloads rejected none).
COLUMN_DEFAULTS: dict[str, Any] = {
    "rejected": 0,
    "rejected_cum": 0,
    "byz_frac": 0.0,
    "attack": "none",
    "aggregator": "mean",
    # Runs written before devices were configurable ran on the CPU in float32.
    "device": "cpu",
    "dtype": "float32",
    "peak_device_mb": None,
}
HIGHER_IS_BETTER = {"accuracy": True, "rouge_l": True}
PACKAGES = (
    "torch",
    "transformers",
    "datasets",
    "evaluate",
    "peft",
    "numpy",
    "pandas",
    "snakemake",
    "rouge",
    "rouge-score",
)


def _umask() -> int:
    # Read by setting and restoring: the only portable way (a process-wide value, set back at once).
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file 0600; a result must get the permissions any new file would get.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def peak_rss_mb() -> float:
    """Peak resident set of this process's own address space so far, in MB (2^20 bytes).

    Linux: VmHWM from /proc/self/status, which starts afresh with the new address space of an exec.
    Not ru_maxrss: Linux carries it over fork and exec, so a child started by a parent holding a model
    would report the parent's peak (every kind of a first measurement read the same 3147 MB).
    Elsewhere ru_maxrss (KiB on Linux, bytes on macOS) is the fallback."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**10  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def git_info(cwd: str | Path | None = None) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(
                ["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    commit = git("rev-parse", "HEAD")
    # Results and figures are outputs, not code: a checkout whose results are being regenerated is clean.
    status = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!results", ":!figures")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def provenance() -> dict[str, Any]:
    return {
        "git": git_info(Path(__file__).parent),
        "packages": package_versions(),
        "python": platform.python_version(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
    }


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class RunWriter:
    """Writes one run folder; every call leaves both files complete on disk."""

    def __init__(self, out_dir: str | Path, meta: Mapping[str, Any], rows: Iterable[Mapping[str, Any]] = ()):
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.meta = dict(meta)
        # A resumed run starts from the rows its checkpoint recorded, whatever the files on disk say.
        self.rows: list[dict[str, Any]] = [dict(r) for r in rows]
        self.meta["status"] = "running"
        self.meta.setdefault("started", now())
        atomic_write_json(self.dir / "meta.json", self.meta)
        self._write_rows()

    def _write_rows(self) -> None:
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in self.rows)
        atomic_write_text(self.dir / "rounds.jsonl", text)

    def add_row(self, row: Mapping[str, Any]) -> None:
        self.rows.append(dict(row))
        self._write_rows()

    def update_meta(self, **fields: Any) -> None:
        self.meta.update(fields)
        atomic_write_json(self.dir / "meta.json", self.meta)

    def finish(self, status: str, reason: str | None = None, **fields: Any) -> None:
        self.update_meta(status=status, reason=reason, finished=now(), **fields)


# ---- the public way to write a run folder: open it, add rows, finish it -------------------------------
# The engine writes every run through these three, and so can any program that is not zofo's round loop
# (workflow/scripts/methods/local_only.py is one): a folder written this way joins every table and figure.


def open_run(
    out_dir: str | Path, meta: Mapping[str, Any], rows: Iterable[Mapping[str, Any]] = ()
) -> RunWriter:
    """Start the run folder ``out_dir``: meta.json (``meta``, with status "running", the start time and
    this process's provenance unless ``meta`` gives its own) and rounds.jsonl (``rows``: none for a new
    run, the rows a checkpoint kept for a resumed one). Add rows with ``add_row(round_row(...))`` and end
    with ``finish(status, ...)``."""
    return RunWriter(out_dir, {"provenance": provenance(), **meta}, rows)


def round_row(base: Mapping[str, Any], **values: Any) -> dict[str, Any]:
    """One row of rounds.jsonl: the run's identity columns (``base``: method, model, seed, ...) and this
    evaluation's values (round, metric, bits, timings, ...). Together they must be exactly the schema's
    columns (``ROUND_COLUMNS``): a row missing one, or holding one the schema does not know, is refused
    with the columns named, before anything is written."""
    row = {**base, **values}
    missing = [c for c in ROUND_COLUMNS if c not in row]
    unknown = sorted(c for c in row if c not in ROUND_COLUMNS)
    if missing or unknown:
        raise ValueError(
            f"rounds.jsonl row: missing columns {missing}, unknown columns {unknown}; "
            f"allowed: exactly the columns of zofo.engine.record.ROUND_COLUMNS"
        )
    return row
