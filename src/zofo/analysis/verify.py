"""Run folders checked against the results schema and against their own record, before any table
averages them: ``verify_runs`` (for the tables) and ``zofo check`` (for people).

A run folder passes when its files parse, its rows are complete up to its final round, its final metric
is finite, its config hash is the hash of its recorded config, its rounds.jsonl is the one its meta.json
describes, its counted bits match its method's formula and, where the workflow's declaration is given,
its recorded config is the declared one. Each failure is a ``Problem`` naming the folder, the check and
what is wrong. Pure and fast: JSON files only, no torch, no pandas (a declaration given as config
mappings is resolved through ``RunConfig``, which does import the method registry).
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zofo.core.config import HASH_WHEN_SET, NOT_IDENTITY, config_hash, flat_keys
from zofo.engine.record import COLUMN_DEFAULTS, FINISHED, LOCK, META, ROUND_COLUMNS, ROUNDS, read_rows

# What each check asks of a run folder (the ``check`` of a Problem).
CHECKS = {
    "files": "meta.json and rounds.jsonl exist and parse; rows have the schema's columns and types",
    "status": "the run ended with a result: ok, or diverged",
    "rows": "rows in round order, all of this run (config hash, seed), cumulative counts adding up",
    "complete": "a row for every evaluation round up to the final one (ok) or to the divergence",
    "final": "an ok run's final metric and eval loss are finite numbers",
    "digest": "rounds.jsonl is the file meta.json describes (its recorded sha256)",
    "hash": "the recorded config hash is the hash of the recorded config",
    "declared": "the recorded config is the one the workflow declares for the folder",
    "bits": "each row's counted bits are the method's formula x clients x rounds since the last row, the "
    "downlink's catch-up part aside; catch-up only under partial participation, and FedKSeed's own total",
}

# Keys a recorded config may lack, with the value its run had: each key entered RunConfig after runs
# had been recorded, and until then every run behaved as this value does (``zo.fuse``: the unfused
# step's arithmetic; the others: their defaults). ``device`` says where a run computed, not what.
# The keys the hash leaves out at their defaults (HASH_WHEN_SET) are exactly such keys; zo.fuse is the one
# whose value before it existed is not its default.
ADDED_KEYS: dict[str, Any] = {**HASH_WHEN_SET, "zo.fuse": False}
# Keys outside a run's identity (where it computed, its caches): never named as a difference.
NOT_COMPARED = NOT_IDENTITY
# Types a row's value may have, by the schema's dtype (NaN and null are values of a float column:
# whether they are allowed is the checks' business, not the schema's).
_TYPES = {"int64": (int,), "float64": (int, float, type(None)), "string": (str,)}
_MAX_LINES = 3  # failures of one kind named per run; the rest are counted


@dataclass(frozen=True)
class Problem:
    """One failed check of one run folder."""

    run_dir: str
    check: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


def find_runs(root: str | Path) -> list[Path]:
    """Every run folder under ``root`` (``root`` itself if it is one): a folder holding meta.json or
    rounds.jsonl, in sorted order."""
    found = []
    for here, dirs, files in os.walk(root):
        dirs.sort()
        if META in files or ROUNDS in files:
            found.append(Path(here))
    return sorted(found)


def with_added_keys(config: Mapping[str, Any]) -> dict[str, Any]:
    """A recorded config with every key it lacks from ``ADDED_KEYS`` set to the value its run had."""
    out = json.loads(json.dumps(config))
    for dotted, value in ADDED_KEYS.items():
        *head, leaf = dotted.split(".")
        node = out
        for part in head:
            node = node.setdefault(part, {})
        if isinstance(value, dict):
            node[leaf] = {**value, **node.get(leaf, {})}
        else:
            node.setdefault(leaf, value)
    return out


def config_differences(recorded: Mapping[str, Any], declared: Mapping[str, Any]) -> list[str]:
    """``key (recorded X, declared Y)`` for every dotted key where two resolved configs differ."""
    a = flat_keys(with_added_keys(recorded))
    b = flat_keys(with_added_keys(declared))
    missing = "<absent>"
    return [
        f"{k} (recorded {a.get(k, missing)!r}, declared {b.get(k, missing)!r})"
        for k in sorted(set(a) | set(b))
        if not any(k == n or k.startswith(f"{n}.") for n in NOT_COMPARED)
        and a.get(k, missing) != b.get(k, missing)
    ]


def _resolve(declared: Mapping[str, Any]) -> dict[str, Any]:
    from zofo.core.config import RunConfig  # the registry (torch) only for a declaration to resolve

    return RunConfig.from_dict(declared).to_dict()


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def schedule(rounds: int, eval_every: int) -> list[int]:
    """The rounds the engine writes a row for: 0, every ``eval_every``-th, and the last."""
    return [0, *(r for r in range(1, rounds + 1) if r % eval_every == 0 or r == rounds)]


def _named(items: list[str]) -> str:
    more = len(items) - _MAX_LINES
    return "; ".join(items[:_MAX_LINES]) + (f"; and {more} more" if more > 0 else "")


def _lock_held(run_dir: Path) -> bool:
    # Probed with a shared lock, released at once: a writer's exclusive lock refuses it.
    try:
        fd = os.open(run_dir / LOCK, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def verify_run(run_dir: str | Path, declared: Mapping[str, Any] | str | None = None) -> list[Problem]:
    """Every failed check of one run folder (``CHECKS``); an empty list when it passes.

    ``declared``: what the workflow declares for this folder, as a RunConfig mapping (resolved here) or
    as the config hash it must have; None skips that check."""
    run_dir = Path(run_dir)
    name = str(run_dir)
    problems: list[Problem] = []

    def fail(check: str, message: str) -> None:
        problems.append(Problem(name, check, message))

    meta: dict[str, Any] | None = None
    meta_path, rounds_path = run_dir / META, run_dir / ROUNDS
    if not meta_path.is_file():
        fail("files", f"no {META}")
    else:
        try:
            loaded = json.loads(meta_path.read_text())
            if not isinstance(loaded, dict):
                raise ValueError("not a JSON object")
            meta = loaded
        except ValueError as e:
            fail("files", f"{meta_path}: not JSON ({e})")
    rows: list[dict[str, Any]] | None = None
    if not rounds_path.is_file():
        fail("files", f"no {ROUNDS}")
    else:
        try:
            rows = read_rows(rounds_path)
        except ValueError as e:
            fail("files", str(e))
    if meta is not None:
        absent = [k for k in ("config", "config_hash", "status") if k not in meta]
        if absent or not isinstance(meta.get("config"), dict):
            fail("files", f"{meta_path}: no {', '.join(absent) or 'config mapping'}")
            meta = None
    if rows is not None:
        _check_columns(rows, fail)
    if meta is None:
        return problems

    cfg: dict[str, Any] = meta["config"]
    status, recorded_hash = meta["status"], meta["config_hash"]
    if status not in FINISHED:
        why = f" ({meta['reason']})" if meta.get("reason") else ""
        if status == "running":
            why = (
                " (a live process holds its lock)"
                if _lock_held(run_dir)
                else " (no process writes it: stopped or killed; the same run command resumes it)"
            )
        fail("status", f"status {status}{why}")
    written_by = (meta.get("method") or {}).get("written_by")
    # A config recorded before a key existed is read with the value its run had (ADDED_KEYS).
    own_hash = config_hash(with_added_keys(cfg))
    if not written_by and own_hash != recorded_hash:
        fail("hash", f"config hash {recorded_hash} is not the hash of the recorded config ({own_hash})")
    if declared is not None and not written_by:
        _check_declared(cfg, recorded_hash, declared, fail)
    digest = meta.get("rounds_sha256")
    if digest and rounds_path.is_file():
        actual = hashlib.sha256(rounds_path.read_bytes()).hexdigest()
        if actual != digest:
            fail(
                "digest",
                f"{ROUNDS} changed after the run wrote it (sha256 {actual[:12]}, recorded {digest[:12]})",
            )
    if rows is not None:
        _check_rows(rows, cfg, meta, fail)
    order = list(CHECKS)
    return sorted(problems, key=lambda p: order.index(p.check))


def _check_columns(rows: list[dict[str, Any]], fail: Any) -> None:
    bad = []
    for i, row in enumerate(rows, 1):
        for col, dtype in ROUND_COLUMNS.items():
            if col not in row:
                if col not in COLUMN_DEFAULTS:
                    bad.append(f"row {i}: no column {col}")
            elif not isinstance(row[col], _TYPES[dtype]) or isinstance(row[col], bool):
                bad.append(f"row {i}: {col} = {row[col]!r} is not of type {dtype}")
    if bad:
        fail("files", f"{ROUNDS}: {_named(bad)}")


def _check_declared(cfg: dict[str, Any], recorded: str, declared: Mapping[str, Any] | str, fail: Any) -> None:
    current = config_hash(with_added_keys(cfg))
    if isinstance(declared, str):
        if declared not in (recorded, current):
            fail("declared", f"config hash {recorded}, declared {declared}")
        return
    from zofo.core.errors import ZofoError

    try:
        resolved = _resolve(declared)
    except ZofoError as e:
        fail("declared", f"the declared config is not valid: {e}")
        return
    if config_hash(resolved) != current:
        diff = config_differences(cfg, resolved)
        fail("declared", f"recorded config is not the declared one: {_named(diff) or 'hashes differ'}")


def _check_rows(rows: list[dict[str, Any]], cfg: dict[str, Any], meta: dict[str, Any], fail: Any) -> None:
    fed = cfg.get("federation") or {}
    try:
        expected = schedule(int(fed["rounds"]), int(fed["eval_every"]))
    except (KeyError, TypeError, ValueError):
        fail("files", "the recorded config has no federation.rounds and federation.eval_every")
        return
    status = meta["status"]
    rounds = [r.get("round") for r in rows]
    others = sorted({str(r.get("config_hash")) for r in rows} - {str(meta["config_hash"])})
    if others:
        fail("rows", f"rows of another config (config hash {', '.join(others)})")
    seeds = sorted({str(r.get("seed")) for r in rows} - {str(cfg.get("seed"))})
    if seeds:
        fail("rows", f"rows of seed {', '.join(seeds)} in a run of seed {cfg.get('seed')}")
    if any(not isinstance(r, int) for r in rounds) or rounds != sorted(set(rounds)):
        fail("rows", f"rounds out of order or repeated: {rounds}")
        return
    # The rows the run's end says it must have: all of them when it finished ok, those before its
    # divergence when it diverged; never a gap before its last row. A run written by a workflow rule
    # evaluates on a schedule of its own.
    missing: list[int] = []
    if not (meta.get("method") or {}).get("written_by"):
        if status == "ok":
            needed = expected
        elif status == "diverged" and isinstance(meta.get("diverged_round"), int):
            needed = [r for r in expected if r < meta["diverged_round"]]
        else:
            needed = []
        last = rounds[-1] if rounds else -1
        missing = [r for r in expected if r not in rounds and (r <= last or r in needed)]
        unexpected = [r for r in rounds if r not in expected]
        if missing:
            fail(
                "complete",
                f"status {status} but no rows for rounds {missing} (final round "
                f"{needed[-1] if needed else last}, {len(rows)} rows)",
            )
        if unexpected:
            fail(
                "complete",
                f"rows for rounds {unexpected}, which the config (rounds {fed['rounds']}, eval_every "
                f"{fed['eval_every']}) never evaluates",
            )
    if status == "ok" and rows and not missing:
        final = rows[-1]
        for col in ("metric", "eval_loss"):
            if not _finite(final.get(col)):
                fail("final", f"final {col} (round {final['round']}) is {final.get(col)!r}")
    _check_counts(rows, fail)
    _check_bits(rows, cfg, meta, fail)


def _check_counts(rows: list[dict[str, Any]], fail: Any) -> None:
    bad = []
    for cum_col, col in (
        ("bits_up_cum", "bits_up"),
        ("bits_down_cum", "bits_down"),
        ("rejected_cum", "rejected"),
    ):
        total = 0
        for i, row in enumerate(rows, 1):
            if col not in row and cum_col not in row:
                break  # a column the run predates
            if not (_finite(row.get(col)) and _finite(row.get(cum_col))):
                break  # named by the schema check
            total += row[col]
            if row[cum_col] != total:
                bad.append(
                    f"row {i} (round {row['round']}): {cum_col} {row[cum_col]}, "
                    f"but the rows' {col} sum to {total}"
                )
                break
    steps = [r.get("local_steps_total") for r in rows]
    if all(_finite(s) for s in steps) and any(b < a for a, b in zip(steps[:-1], steps[1:], strict=True)):
        bad.append(f"local_steps_total decreases: {steps}")
    if bad:
        fail("rows", _named(bad))


def _check_bits(rows: list[dict[str, Any]], cfg: dict[str, Any], meta: dict[str, Any], fail: Any) -> None:
    part, fed = cfg.get("partition") or {}, cfg.get("federation") or {}
    cohort = fed.get("clients_per_round") or part.get("num_clients")
    bad = _catch_up_problems(rows, isinstance(cohort, int) and cohort == part.get("num_clients"), meta)
    formula = meta.get("formula_bits")
    checked = len(rows) if isinstance(formula, dict) and isinstance(cohort, int) else 0
    for i in range(1, checked):
        row, rounds = rows[i], rows[i].get("round", 0) - rows[i - 1].get("round", 0)
        # A round with rejected payloads broadcasts to fewer clients (or to none): not the formula's.
        if row.get("rejected"):
            continue
        # The formula is per round; what returning clients downloaded for rounds they missed is on top
        # (a value that is not a count is named by the schema check).
        catch_up = _catch_up(row)
        for col, key, extra in (("bits_up", "uplink", 0), ("bits_down", "downlink", catch_up)):
            want, got = formula.get(key), row.get(col)
            if _finite(want) and (not _finite(got) or got - extra != want * cohort * rounds):
                counted = f"{col} {got}" + (f" - bits_catch_up {extra}" if extra else "")
                bad.append(
                    f"row {i + 1} (round {row['round']}): {counted}, the formula gives "
                    f"{want} x {cohort} clients x {rounds} rounds = {want * cohort * rounds}"
                )
    if bad:
        fail("bits", _named(bad))


def _catch_up(row: dict[str, Any]) -> int:
    """The row's catch-up downlink: 0 in a row written before the column existed or not a count."""
    value = row.get("bits_catch_up", COLUMN_DEFAULTS["bits_catch_up"])
    return value if _finite(value) else 0


def _catch_up_problems(rows: list[dict[str, Any]], everyone: bool, meta: dict[str, Any]) -> list[str]:
    """The rows' catch-up downlink against what bounds it: a part of bits_down; none when every client
    takes part in every round (nobody misses one); and, where the method counted its own total
    (FedKSeed's describe: its returning clients x K fp32), exactly that total."""
    bad = []
    for i, row in enumerate(rows, 1):
        extra, down = _catch_up(row), row.get("bits_down")
        if _finite(down) and not 0 <= extra <= down:
            bad.append(
                f"row {i} (round {row['round']}): bits_catch_up {extra} is not within 0 .. bits_down {down}"
            )
        elif extra and everyone:
            bad.append(
                f"row {i} (round {row['round']}): bits_catch_up {extra} with every client in every round"
            )
    own = (meta.get("describe") or {}).get("catch_up_bits_down")
    total = sum(_catch_up(r) for r in rows)
    if meta.get("status") == "ok" and _finite(own) and own != total:
        predate = "" if any("bits_catch_up" in r for r in rows) else " (the rows predate the column)"
        bad.append(
            f"the method counted {own} catch-up bits down, the rows' bits_catch_up sum to {total}{predate}"
        )
    return bad


def verify_runs(
    run_dirs: Iterable[str | Path], declared: Mapping[str, Mapping[str, Any] | str] | None = None
) -> list[Problem]:
    """Every problem of the given run folders, in their order. ``declared`` maps a run folder (as given
    in ``run_dirs``) to what the workflow declares for it (``verify_run``); a declared folder that
    ``run_dirs`` lacks, or that does not exist, is a problem of its own (check ``files``)."""
    dirs = [str(d) for d in run_dirs]
    problems = []
    for d in dirs:
        problems += verify_run(d, None if declared is None else declared.get(d))
    if declared is not None:
        listed = set(dirs)
        for d in declared:
            if str(d) not in listed:
                problems.append(
                    Problem(str(d), "files", "declared by the workflow but not written: no run folder")
                )
    return problems


def declared_runs(config: Mapping[str, Any], runs_dir: str | Path) -> dict[str, Mapping[str, Any]]:
    """Run folder (under ``runs_dir``) -> the RunConfig mapping a workflow config declares for it, every
    study's runs and those of methods written as workflow rules (``zofo.grid.study``)."""
    from zofo.grid import study

    runs, _ = study.expand(config)
    return {str(Path(runs_dir) / path): cfg for path, cfg in {**runs, **study.rule_runs(config)}.items()}
