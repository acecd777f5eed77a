"""Command line: ``zofo run``, ``zofo check``, ``zofo list``, ``zofo prepare``, ``zofo bench``. Bad input
exits with 2; ``zofo check`` exits with 1 when a run folder fails a check."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from zofo.core.errors import ConfigError, ZofoError


def _set(data: dict[str, Any], assignment: str) -> None:
    """Apply one ``a.b.c=value`` override (value parsed as YAML) to a nested mapping."""
    from zofo.core.config import parse_yaml

    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise ConfigError("--set", assignment, "key.path=value, e.g. federation.rounds=20")
    node = data
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError("--set", assignment, f"a path through mappings; '{p}' is not one")
    node[parts[-1]] = parse_yaml(raw, f"--set {assignment}", prefix=key)


def _is_run_file(name: str) -> bool:
    """Whether ``name`` is something a run writes in its own folder: the files the run writer owns, its
    lock file (left behind by a killed run), the workflow's config.yaml, and the ".<name>.*" temporary
    file an atomic write leaves when it is killed."""
    from zofo.engine.record import LOCK, OWNED

    owned = (*OWNED, "config.yaml")
    return name == LOCK or name in owned or any(name.startswith(f".{f}.") for f in owned)


def check_out_dir(out: str) -> Path:
    """The run folder ``--out`` names, refused before anything is read or written when it is empty, the
    current folder (or one above it), an existing file, a folder holding files other than a run's,
    or a place this user cannot write."""
    if not out.strip():
        raise ConfigError("--out", out, "a folder path (an empty one would write into the current folder)")
    path = Path(out).expanduser()
    here = Path.cwd().resolve()
    resolved = path.resolve()
    if resolved == here or resolved in here.parents:
        raise ConfigError("--out", out, "a folder for this run alone, not the current folder or one above it")
    if path.exists() and not path.is_dir():
        raise ConfigError("--out", out, "a folder; this path is an existing file")
    if path.is_dir():
        foreign = sorted(p.name for p in path.iterdir() if not _is_run_file(p.name))
        if foreign:
            shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
            raise ConfigError(
                "--out",
                out,
                f"a new or empty folder, or a run folder to resume; this folder holds other files ({shown})",
            )
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError("--out", out, f"a path through folders; {existing} is a file")
    try:
        # An unnamed temporary file where the platform allows it: the probe leaves nothing behind.
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as e:
        raise ConfigError(
            "--out", out, f"a folder this user can write; writing in {existing} failed ({e.strerror})"
        ) from None
    return path


def cmd_run(args: argparse.Namespace) -> int:
    from zofo.core.config import RunConfig, read_config_file

    out = check_out_dir(args.out)
    data = read_config_file(args.config)
    for s in args.set or []:
        _set(data, s)
    cfg = RunConfig.from_dict(data)
    from zofo.engine.loop import run

    # The engine guards the folder itself (a finished run, or another config's, is refused unless
    # --restart asks to start over): the same rule for the command line and for the Python API.
    print(run(cfg, out, progress=not args.quiet, restart=args.restart))
    return 0


def cmd_check(args: argparse.Namespace) -> int:

    from zofo.analysis.verify import declared_runs, find_runs, verify_runs

    root = Path(args.results_dir)
    if not root.is_dir():
        raise ConfigError("RESULTS_DIR", str(root), "an existing folder of run folders")
    # A results folder of the workflow keeps its run folders under runs/; any other folder is searched.
    base = root / "runs" if (root / "runs").is_dir() else root
    runs = find_runs(base)
    declared = None
    if args.config:
        from zofo.core.config import read_config_file

        path = Path(args.config)
        # The same reader as a run's config: duplicate keys and empty files are refused here too.
        config = read_config_file(path)
        try:
            declared = declared_runs(config, base)
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError("--config", str(path), f"a workflow config the grid can expand ({e})") from None
    problems = verify_runs(runs, declared)
    bad = sorted({p.run_dir for p in problems})
    undeclared = [str(r) for r in runs if declared is not None and str(r) not in declared]
    if args.json:
        print(
            json.dumps(
                {
                    "results_dir": str(base),
                    "runs": len(runs),
                    "bad_runs": len(bad),
                    "undeclared": undeclared,
                    "problems": [p.as_dict() for p in problems],
                },
                indent=2,
            )
        )
    else:
        for d in bad:
            print(f"{d}: " + "; ".join(f"{p.check}: {p.message}" for p in problems if p.run_dir == d))
        against = f" against {args.config}" if args.config else ""
        print(f"zofo check: {base}: {len(runs)} run folders{against}, {len(bad)} bad", file=sys.stderr)
        if undeclared:
            print(
                f"zofo check: {len(undeclared)} run folders that {args.config} does not declare "
                f"(checked on their own record only), e.g. {undeclared[0]}",
                file=sys.stderr,
            )
    return 1 if bad else 0


def cmd_list(args: argparse.Namespace) -> int:
    from zofo.assets.catalog import PACKAGED
    from zofo.core.registry import METHODS, PARTITIONERS, TASKS

    print("methods:")
    for name in METHODS.names():
        cls = METHODS.get(name)
        print(f"  {name:<20} {cls.family.upper()}  {cls.reference}")
    print("models (packaged; any local folder or hub id also works):")
    for name, spec in PACKAGED.items():
        print(f"  {name:<20} {spec.kind:<10} {spec.description}")
    print("tasks:")
    for name in TASKS.names():
        print(f"  {name}")
    print("partitioners:")
    for name in PARTITIONERS.names():
        print(f"  {name}")
    from zofo.robust.aggregators import AGGREGATORS
    from zofo.robust.attacks import ATTACKS

    print("attacks (byzantine.attack; the payload kinds each changes):")
    for name, kinds in sorted(ATTACKS.items()):
        print(f"  {name:<20} {', '.join(sorted(kinds))}")
    print("aggregators (aggregator.name; per method: which payload it combines):")
    for name, spec in AGGREGATORS.items():
        print(f"  {name:<20} {', '.join(sorted(spec.kinds))}")
    for name in METHODS.names():
        cls = METHODS.get(name)
        params = cls.Params()
        kinds = ", ".join(f"{k}: {v}" for k, v in cls.payload_kinds(params).items())
        print(f"  {name:<20} payload {{{kinds}}} -> {', '.join(cls.aggregators(params))}")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from zofo.assets.packaged import WHEEL_ASSETS, prepare_model

    if args.name not in WHEEL_ASSETS:
        raise ConfigError("name", args.name, f"one of {sorted(WHEEL_ASSETS)}")
    out = Path(args.out) if args.out else Path(args.assets_dir) / "models" / args.name
    print(prepare_model(args.name, out))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from zofo import bench

    return bench.run_from_args(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="zofo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run one federated experiment from a YAML config; writes one run folder")
    p.add_argument("config", help="YAML file with the run configuration (see config/run-example.yaml)")
    p.add_argument("--out", required=True, help="run folder to write (meta.json, rounds.jsonl)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key, repeatable")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--restart",
        action="store_true",
        help="start over: delete the run the folder holds (finished, of another config) and its "
        "checkpoint, once this run holds the folder. Without it a finished run or another config's run "
        "is never overwritten, and an unfinished run of this config resumes",
    )
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser(
        "check",
        help="check run folders before tables use them: files, complete rows, finite final metric, "
        "config hash, digest, bits; one line per bad run, exit 1 if any",
    )
    p.add_argument(
        "results_dir", metavar="RESULTS_DIR", help="a results folder (its runs/) or any folder of runs"
    )
    p.add_argument(
        "--config",
        metavar="CONFIG.yaml",
        help="workflow config: also check each run's config against what it declares for the folder, "
        "and that every declared run exists",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output: every problem as JSON")
    p.set_defaults(fn=cmd_check)
    p = sub.add_parser("list", help="methods, packaged models, tasks, partitioners, attacks, aggregators")
    p.set_defaults(fn=cmd_list)
    p = sub.add_parser("prepare", help="convert a packaged GGUF model to safetensors (once)")
    p.add_argument("name")
    p.add_argument("--assets-dir", default="resources")
    p.add_argument("--out", default=None, help="target folder (default: ASSETS_DIR/models/NAME)")
    p.set_defaults(fn=cmd_prepare)
    argv = sys.argv[1:] if argv is None else argv
    bench_help = "time ZO steps against their forward passes, memory, FedKSeed's server update (ratios)"
    if argv[:1] == ["bench"]:
        # The bench's options come with its package, which imports torch and pandas: built for
        # `zofo bench` only, so that `zofo run`, `check` and `list` start without them.
        from zofo.bench import DESCRIPTION, add_arguments

        p = sub.add_parser("bench", help=bench_help, description=DESCRIPTION)
        add_arguments(p)
    else:
        p = sub.add_parser("bench", help=bench_help)  # listed in `zofo --help`
    p.set_defaults(fn=cmd_bench)
    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except ZofoError as e:
        print(f"zofo: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
