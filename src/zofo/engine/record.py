"""The results schema: one folder per run with ``meta.json`` and ``rounds.jsonl``, written atomically.

The schema is the contract between runs and tables/figures: any program that writes a run folder in
this form (another framework, another language) joins every table and figure. ``ROUND_COLUMNS`` lists
the per-evaluation-point columns with their dtypes; ``load_runs`` reads folders back into a typed
DataFrame and keeps runs whose status is not ``ok`` separate.

Every write goes to a temporary file in the same folder and is moved into place with ``os.replace``,
so a crash or kill never leaves a half-written file: a reader sees the old file or the new one.

A writer holds its folder (``RunFolder``): one process at a time, never over a finished run or a run
of another config, and a resumed run never shortens the rows already on disk.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import hashlib
import json
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from zofo.core.errors import ZofoError

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
    # the part of bits_down that returning clients downloaded to catch up on rounds they missed
    # (zofo.methods.base.FederatedMethod.catch_up); bits_down minus it is the broadcasts' per-round count
    "bits_catch_up": "int64",
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
    # Runs written before catch-up was counted recorded none (zofo check compares FedKSeed's own total).
    "bits_catch_up": 0,
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


META = "meta.json"
ROUNDS = "rounds.jsonl"
CHECKPOINT = "checkpoint.pt"
LOCK = ".lock"
# The files a run writer owns in its folder. A temporary sibling of one (".meta.json.x1y2", from
# atomic_write_text or the checkpoint's save) outlives its write only when the writer was killed.
OWNED = (META, ROUNDS, CHECKPOINT)
# A run that ended with a result: rerunning it would only repeat it.
FINISHED = ("ok", "diverged")


class ResultsWriteError(ZofoError):
    """A run folder or one of its files could not be written (disk full, read-only or no such path)."""


def write_error(path: Path, e: OSError) -> ResultsWriteError:
    free = ""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        try:
            free = f"; {shutil.disk_usage(path.parent).free:,} bytes free there"
        except OSError:
            pass
    return ResultsWriteError(f"cannot write {path}: {e.strerror or e}{free}")


def remove_temporary_files(folder: Path) -> list[str]:
    """Delete what interrupted writes of the owned files left in ``folder``; returns their names. Only
    the folder's holder may call it: another writer's temporary file is in use until its rename."""
    removed = []
    for name in OWNED:
        for tmp in folder.glob(f".{name}.*"):
            tmp.unlink(missing_ok=True)
            removed.append(tmp.name)
    return sorted(removed)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a rounds.jsonl; ValueError names the file and line of one that is not a JSON object."""
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            raise ValueError(f"{path} line {i}: not JSON ({e})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path} line {i}: not a JSON object")
        rows.append(row)
    return rows


def _lock(folder: Path) -> int:
    """An open descriptor of ``folder``/.lock holding an exclusive flock, taken without waiting. The OS
    drops the lock when its holder exits, however it exits, so a killed run never leaves it stuck."""
    path = folder / LOCK
    for _ in range(10):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        except OSError as e:
            raise write_error(path, e) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
            os.close(fd)
            raise ZofoError(
                f"{folder} is being written by another process ({holder or 'its lock is held'}); wait for "
                "it to end or stop it: a stopped or killed run releases the folder at once"
            ) from None
        except OSError as e:
            os.close(fd)
            raise ResultsWriteError(f"cannot lock {path}: {e.strerror or e}") from None
        # A holder deletes the file as it releases it: a lock taken on the file it deleted guards
        # nothing, so the lock counts only while the name still leads to the locked file.
        try:
            st, now_there = os.fstat(fd), os.stat(path)
            held = (st.st_dev, st.st_ino) == (now_there.st_dev, now_there.st_ino)
        except FileNotFoundError:
            held = False
        if held:
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
            except OSError:
                pass  # who holds it is only for the message of a refused writer
            return fd
        os.close(fd)
    raise ZofoError(f"{folder}: its lock file {LOCK} keeps being replaced; is another program deleting it?")


def _refuse(folder: Path, what: str) -> ZofoError:
    return ZofoError(
        f"{folder} holds {what}; write this run to another folder, or pass --restart to delete what "
        "the folder holds and start over"
    )


class RunFolder:
    """A run folder held for writing by this process until ``release`` (or the process's end).

    Taking it: create the folder, lock it (``.lock``, an exclusive flock taken without waiting: a
    second writer is refused at once), delete the temporary files of interrupted writes, then check
    what the folder holds against the run about to be written (``config_hash``):

    - a run of another config (its meta.json or its rows say so), a meta.json or rows that cannot be
      read, or a finished run (status ok or diverged) of this config: refused with ZofoError, nothing
      touched. ``restart=True`` deletes the folder's results and checkpoint instead (only now, once the
      lock is held) and starts afresh;
    - an unfinished run of this config (running and killed, interrupted, failed): written over as a
      resumed run; ``kept_rows`` is how many rows its rounds.jsonl holds, which the writer keeps until
      it has rewritten as many (``RunWriter``).
    """

    def __init__(self, path: str | Path, config_hash: str, *, restart: bool = False):
        self.path = Path(path)
        self.config_hash = config_hash
        # A folder this run made and never wrote into goes again on release (a run refused while it
        # prepares leaves the place as it found it).
        self._created = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ResultsWriteError(f"cannot create the run folder {self.path}: {e.strerror or e}") from None
        self._fd: int | None = _lock(self.path)
        try:
            removed = remove_temporary_files(self.path)
            if removed:
                print(f"zofo: {self.path}: removed interrupted writes {', '.join(removed)}", file=sys.stderr)
            if restart:
                for name in OWNED:
                    (self.path / name).unlink(missing_ok=True)
                self.kept_rows = 0
            else:
                self.kept_rows = self._check()
        except BaseException:
            self.release()
            raise

    def _check(self) -> int:
        meta_path, rows_path = self.path / META, self.path / ROUNDS
        if meta_path.exists():
            try:
                meta = json.loads(meta_path.read_text())
                if not isinstance(meta, dict):
                    raise ValueError("not a JSON object")
            except ValueError as e:
                what = f"a meta.json that cannot be read ({e}): whose run is unknown"
                raise _refuse(self.path, what) from None
            recorded, status = meta.get("config_hash"), meta.get("status")
            if recorded != self.config_hash:
                raise _refuse(
                    self.path,
                    f"a run of another config (config hash {recorded}, status {status}); this run's "
                    f"config hash is {self.config_hash}",
                )
            if status in FINISHED:
                raise ZofoError(
                    f"{self.path} holds a finished run of this config (config hash {recorded}, status "
                    f"{status}): already finished; pass --restart to run it again"
                )
        if not rows_path.exists():
            return 0
        try:
            rows = read_rows(rows_path)
        except ValueError as e:
            raise _refuse(self.path, f"rows that cannot be read ({e})") from None
        others = sorted({str(r.get("config_hash")) for r in rows} - {self.config_hash})
        if others:
            raise _refuse(
                self.path,
                f"rows of another config (config hash {', '.join(others)}); this run's config hash is "
                f"{self.config_hash}",
            )
        return len(rows)

    def release(self) -> None:
        """Give the folder up (idempotent): the lock file goes, then the lock."""
        if getattr(self, "_fd", None) is None:
            return
        try:
            (self.path / LOCK).unlink(missing_ok=True)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None
        if self._created:
            try:
                self.path.rmdir()  # only if empty: a folder holding anything stays
            except OSError:
                pass

    def __del__(self) -> None:
        # A writer dropped without finishing (a test's, a script's) gives its folder back with it.
        self.release()

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


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
    """Writes one run folder; every call leaves both files complete on disk.

    ``out_dir`` is a held ``RunFolder``, or a path that the writer holds itself (under
    ``meta["config_hash"]``) until ``finish``. Writes that fail raise ResultsWriteError naming the file.
    """

    def __init__(
        self,
        out_dir: str | Path | RunFolder,
        meta: Mapping[str, Any],
        rows: Iterable[Mapping[str, Any]] = (),
    ):
        own = not isinstance(out_dir, RunFolder)
        self.folder = RunFolder(out_dir, str(meta["config_hash"])) if own else out_dir
        self._own_folder = own
        self.dir = self.folder.path
        self.meta = dict(meta)
        # A resumed run starts from the rows its checkpoint recorded, whatever the files on disk say;
        # the rows on disk stay until it has as many again (a kill in between loses none of them).
        self.rows: list[dict[str, Any]] = [dict(r) for r in rows]
        self._keep = self.folder.kept_rows
        self.meta["status"] = "running"
        self.meta.setdefault("started", now())
        self._write_meta()
        self._write_rows()

    def _write(self, name: str, text: str) -> None:
        try:
            atomic_write_text(self.dir / name, text)
        except OSError as e:
            raise write_error(self.dir / name, e) from None

    def _write_meta(self) -> None:
        self._write(META, json.dumps(self.meta, indent=2, sort_keys=True, default=str) + "\n")

    def _write_rows(self, force: bool = False) -> None:
        if len(self.rows) < self._keep and not force:
            return
        self._write(ROUNDS, "".join(json.dumps(r, sort_keys=True) + "\n" for r in self.rows))

    def add_row(self, row: Mapping[str, Any]) -> None:
        self.rows.append(dict(row))
        self._write_rows()

    def update_meta(self, **fields: Any) -> None:
        self.meta.update(fields)
        self._write_meta()

    def finish(self, status: str, reason: str | None = None, **fields: Any) -> None:
        """Record how the run ended. A finished run's rows are its own, whatever was on disk before;
        meta.json records the digest of the rounds.jsonl it describes (``zofo check`` compares it)."""
        if status in FINISHED:
            self._write_rows(force=True)
        rounds = self.dir / ROUNDS
        digest = hashlib.sha256(rounds.read_bytes()).hexdigest() if rounds.exists() else None
        self.update_meta(status=status, reason=reason, finished=now(), rounds_sha256=digest, **fields)
        if status != "ok":
            # The log keeps this line when a workflow deletes the outputs of a failed job.
            print(f"zofo: {self.dir}: {status}: {reason}", file=sys.stderr, flush=True)
        if self._own_folder:
            self.folder.release()

    def end(self, status: str, reason: str) -> None:
        """``finish`` for a run that stops on an error or interruption, without raising: the error that
        stopped the run is the one to report. When meta.json cannot be replaced (a full disk has no
        room for a new file), it is rewritten in place, which needs no new space for a small change."""
        try:
            self.finish(status, reason)
        except (ResultsWriteError, OSError) as e:
            path = self.dir / META
            self.meta.update(status=status, reason=reason, finished=now())
            try:
                with open(path, "r+") as f:
                    f.write(json.dumps(self.meta, indent=2, sort_keys=True, default=str) + "\n")
                    f.truncate()
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as e2:
                print(
                    f"zofo: {path} still says running: status {status} could not be written "
                    f"({e}; in place: {e2.strerror or e2})",
                    file=sys.stderr,
                    flush=True,
                )
            print(f"zofo: {self.dir}: {status}: {reason}", file=sys.stderr, flush=True)
        finally:
            if self._own_folder:
                self.folder.release()


# ---- the public way to write a run folder: open it, add rows, finish it -------------------------------
# The engine writes every run through these three, and so can any program that is not zofo's round loop
# (workflow/scripts/methods/local_only.py is one): a folder written this way joins every table and figure.


def open_run(
    out_dir: str | Path | RunFolder, meta: Mapping[str, Any], rows: Iterable[Mapping[str, Any]] = ()
) -> RunWriter:
    """Start the run folder ``out_dir`` (a path, whose lock is then taken and which is refused if it holds
    a finished run or another config's: ``RunFolder``; or a ``RunFolder`` the caller already holds):
    meta.json (``meta``, which must name its ``config_hash``, with status "running", the start time and
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
