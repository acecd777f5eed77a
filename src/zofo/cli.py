"""Command line: ``zofo run``, ``zofo check``, ``zofo list``, ``zofo prepare``, ``zofo bench``. Bad input
exits with 2; ``zofo check`` exits with 1 when a run folder fails a check."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from zofo.core.errors import ConfigError, ZofoError


def _set(data: dict[str, Any], assignment: str) -> None:
    """Apply one ``a.b.c=value`` override (value parsed as YAML) to a nested mapping."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise ConfigError("--set", assignment, "key.path=value, e.g. federation.rounds=20")
    node = data
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError("--set", assignment, f"a path through mappings; '{p}' is not one")
    try:
        node[parts[-1]] = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise ConfigError("--set", assignment, f"a value in YAML syntax ({e.problem})") from None


def cmd_run(args: argparse.Namespace) -> int:
    from zofo.core.config import RunConfig

    path = Path(args.config)
    if not path.is_file():
        raise ConfigError("config", str(path), "an existing YAML file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError("config", str(path), f"a valid YAML file ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError("config", str(path), "a YAML mapping at the top level")
    for s in args.set or []:
        _set(data, s)
    cfg = RunConfig.from_dict(data)
    from zofo.engine.loop import run

    out = run(cfg, args.out, progress=not args.quiet, restart=args.restart)
    print(out)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    import json

    from zofo.analysis.verify import declared_runs, find_runs, verify_runs

    root = Path(args.results_dir)
    if not root.is_dir():
        raise ConfigError("RESULTS_DIR", str(root), "an existing folder of run folders")
    # A results folder of the workflow keeps its run folders under runs/; any other folder is searched.
    base = root / "runs" if (root / "runs").is_dir() else root
    runs = find_runs(base)
    declared = None
    if args.config:
        path = Path(args.config)
        try:
            config = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError("--config", str(path), f"a readable workflow config in YAML ({e})") from None
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
    from zofo.bench import DESCRIPTION, add_arguments

    p = sub.add_parser(
        "bench",
        help="time ZO steps against their forward passes, memory, FedKSeed's server update (ratios)",
        description=DESCRIPTION,
    )
    add_arguments(p)
    p.set_defaults(fn=cmd_bench)
    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except ZofoError as e:
        print(f"zofo: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
