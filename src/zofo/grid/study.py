"""A workflow config (its studies) as the runs it declares: pure functions, no I/O.

The workflow (``workflow/rules/common.smk``) and the tests both expand a config through this module, so
what a config file declares and what ``snakemake`` runs cannot drift apart. A config has the keys of
``workflow/schemas/config.schema.yaml``:

- the main study: ``run_defaults`` (a RunConfig mapping), ``methods`` (method name -> overrides of the
  defaults) and its grid (``main_grid``: ``alphas``, or a ``grid`` of dotted keys such as model sizes)
  x ``seeds``; ``threads_per_run`` and ``label`` go to every run;
- optionally ``studies``: more named studies, each with its own ``methods``, overrides of the defaults
  (``run_defaults``), a ``grid`` of dotted RunConfig keys -> values (e.g. ``byzantine.fraction``),
  optional per-method ``grid_overrides`` and ``seeds`` (default: the main study's).

- optionally ``rule_methods``: methods written as workflow rules (``workflow/rules/methods/``), not
  registered in zofo; each gets the main study's cells (``rule_runs``) and joins its tables.

A run folder is named by its method, its grid values and its seed (``fedavg/alpha0.5/seed0``,
``fedavg/model-minilm-l6/byz0.2/agg-median/seed0``), never by its study: two studies that declare the
same run share its folder and it runs once, and two different configs that would share a folder are
refused when the config is expanded.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping
from typing import Any


def deep_merge(base: Mapping[str, Any] | None, override: Mapping[str, Any] | None) -> dict[str, Any]:
    """A new mapping: ``base`` with ``override`` laid over it, nested mappings merged key by key.

    A non-mapping value in ``override`` (a list, a number, None) replaces the base value whole. Neither
    argument is modified.
    """
    out = copy.deepcopy(dict(base or {}))
    for k, v in (override or {}).items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def main_grid(config: Mapping[str, Any]) -> dict[str, list[Any]]:
    """The main study's grid axes (dotted RunConfig key -> values), in folder order.

    A config gives the Dirichlet alphas either as ``alphas`` or as ``grid["partition.alpha"]``; a
    ``grid`` may add any other axis (``model.layers: [1, 3, null]`` makes the main table a method x model
    size table). Without ``partition.alpha`` in the grid, ``alphas`` is its first axis. Raises ValueError
    when both or neither give the alphas.
    """
    axes = dict(config.get("grid") or {})
    if "partition.alpha" in axes:
        if "alphas" in config:
            raise ValueError("alphas and grid['partition.alpha'] both give the main study's alphas; keep one")
        return axes
    if "alphas" not in config:
        raise ValueError("the main study needs its Dirichlet alphas: alphas, or grid['partition.alpha']")
    return {"partition.alpha": list(config["alphas"]), **axes}


def _main_cells(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    axes = main_grid(config)
    return [dict(zip(axes, values, strict=True)) for values in itertools.product(*axes.values())]


def _main_values(cell: Mapping[str, Any]) -> dict[str, Any]:
    """A main-study cell as its run config takes it: alphas are numbers however the config spells them
    (``0.5`` and ``"0.5"`` name one run), and ``iid`` is an iid partition."""
    out = dict(cell)
    if "partition.alpha" in out and out["partition.alpha"] != IID:
        out["partition.alpha"] = float(out["partition.alpha"])
    return resolve_iid(out)


def cell_config(
    config: Mapping[str, Any],
    defaults: Mapping[str, Any],
    method: str,
    block: Mapping[str, Any] | None,
    cell: Mapping[str, Any],
    seed: Any,
) -> dict[str, Any]:
    """One run's RunConfig mapping: ``defaults`` <- the method's ``block`` <- the grid ``cell`` (dotted
    keys) <- method name, seed and the config's threads and label.

    A null grid value sets nothing: the run keeps what the defaults and the method's block give (and
    ``run_dir`` names no folder part for it), so ``method.params.K: [256, 1024, null]`` shares the run
    of the method's own K with a study that does not sweep it."""
    cell = {k: v for k, v in cell.items() if v is not None}
    cfg = deep_merge(deep_merge(defaults, block or {}), nested(cell))
    return deep_merge(
        cfg,
        {
            "method": {"name": method},
            "seed": int(seed),
            "threads": int(config["threads_per_run"]),
            "label": config["label"],
        },
    )


def expand_runs(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every main-study run's RunConfig mapping: methods outermost, then the grid's cells, then seeds
    (``RunConfig.from_dict`` builds each)."""
    return [
        cell_config(config, config["run_defaults"], m, block, _main_values(cell), seed)
        for m, block in config["methods"].items()
        for cell in _main_cells(config)
        for seed in config["seeds"]
    ]


MAIN = "main"
# Short folder names of common grid axes; any other dotted key is spelled out (``federation.rounds=3``).
AXIS_NAMES = {
    "partition.alpha": "alpha",
    "byzantine.fraction": "byz",
    "byzantine.attack": "attack",
    "aggregator.name": "agg",
    "model.name": "model",
    "model.layers": "layers",
    "partition.name": "partition",
}


IID = "iid"


def resolve_iid(cell: Mapping[str, Any]) -> dict[str, Any]:
    """A heterogeneity grid may list ``iid`` among its Dirichlet alphas (``partition.alpha: [0.1, 1.0,
    iid]``): that cell is an iid partition (folder ``alpha-iid``), the limit of alpha -> infinity."""
    out = dict(cell)
    if out.get("partition.alpha") == IID:
        del out["partition.alpha"]
        out["partition.name"] = IID
    return out


# A run folder as Snakemake wildcards, for the rules that write one: the method, the grid part (one
# folder per grid value that is not null, each ending in "/", so empty when every value is null) and the
# seed. ``run_dir`` names only folders of this form, and ``RUN_DIR.format(**parts)`` gives the folder back.
RUN_DIR = "{method}/{cell}seed{seed}"
CELL_PATTERN = r"(?:[^/]+/)*"
SEED_PATTERN = r"\d+"


def run_dir(method: str, cell: Mapping[str, Any], seed: Any) -> str:
    """The folder of one run, relative to ``results/runs``: method / one part per grid axis whose value
    is not null / seed (of the form ``RUN_DIR``)."""
    parts = [method]
    for key, value in cell.items():
        if value is None:
            # null sets nothing (cell_config): the folder is the one a grid without this axis names, so
            # e.g. the full model's run is shared with a study that does not vary model.layers.
            continue
        name = AXIS_NAMES.get(key)
        if name is None:
            parts.append(f"{key}={value}")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            parts.append(f"{name}{value}")  # as the config spells it: alpha0.5, byz0.2
        else:
            parts.append(f"{name}-{value}")
    parts.append(f"seed{seed}")
    return "/".join(parts)


def nested(dotted: Mapping[str, Any]) -> dict[str, Any]:
    """{"a.b": 1, "a.c": 2} -> {"a": {"b": 1, "c": 2}}."""
    out: dict[str, Any] = {}
    for key, value in dotted.items():
        *head, leaf = key.split(".")
        node = out
        for part in head:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def studies(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every study of the config in one form: {name: {methods, run_defaults, grid, grid_overrides,
    seeds, figure}}; the main study (top-level ``methods``) first, as ``main``."""
    out: dict[str, dict[str, Any]] = {}
    if config.get("methods"):
        out[MAIN] = {
            "methods": config["methods"],
            "run_defaults": {},
            "grid": main_grid(config),
            "grid_overrides": {},
            "seeds": list(config["seeds"]),
            "figure": "convergence",
        }
    for name, spec in (config.get("studies") or {}).items():
        if name == MAIN:
            raise ValueError(f"studies: the name {MAIN!r} is the top-level study's; choose another")
        out[name] = {
            "methods": spec["methods"],
            "run_defaults": spec.get("run_defaults") or {},
            "grid": dict(spec.get("grid") or {}),
            "grid_overrides": spec.get("grid_overrides") or {},
            "seeds": list(spec.get("seeds", config["seeds"])),
            "figure": spec.get("figure", "convergence"),
        }
    return out


def same_run(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two run config mappings describe one experiment: equal as written, or equal once each is
    resolved (a key spelled out at its default, like ``model.layers: null``, changes nothing)."""
    if a == b:
        return True
    from zofo.core.config import RunConfig
    from zofo.core.errors import ZofoError

    try:
        return RunConfig.from_dict(a).to_dict() == RunConfig.from_dict(b).to_dict()
    except ZofoError as e:
        # An invalid value is the reason, not the disagreement: name it.
        raise ValueError(str(e)) from None


def _differences(a: Mapping[str, Any], b: Mapping[str, Any], limit: int = 3) -> str:
    """The dotted keys where two valid run config mappings differ once resolved (a key left at its
    default is no difference), with both values: ``key: x against y``."""
    import dataclasses

    from zofo.core.config import RunConfig, flat_keys

    def resolved(mapping: Mapping[str, Any]) -> dict[str, Any]:
        cfg = RunConfig.from_dict(mapping)
        out = cfg.to_dict()
        out["method"]["params"] = dataclasses.asdict(cfg.method_params())
        return flat_keys(out)

    flat_a, flat_b = resolved(a), resolved(b)
    keys = sorted(
        k for k in flat_a.keys() | flat_b.keys() if flat_a.get(k, "unset") != flat_b.get(k, "unset")
    )
    shown = [f"{k}: {flat_a.get(k, 'unset')!r} against {flat_b.get(k, 'unset')!r}" for k in keys[:limit]]
    return "; ".join(shown) + (f"; and {len(keys) - limit} more" if len(keys) > limit else "")


def rule_runs(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Run folder -> config mapping of every run of a method written as a workflow rule (``rule_methods``):
    the main study's grid cells x seeds, configured as a registered method's would be (defaults <- the
    method's block <- the cell, seed). The rule's own script checks the mapping; RunConfig cannot, since
    the method is not registered."""
    out: dict[str, dict[str, Any]] = {}
    for method, block in (config.get("rule_methods") or {}).items():
        if method in (config.get("methods") or {}):
            raise ValueError(f"rule_methods.{method}: also a registered method of the main study")
        for cell, seed in itertools.product(_main_cells(config), config["seeds"]):
            cfg = cell_config(config, config["run_defaults"], method, block, _main_values(cell), seed)
            out[run_dir(method, cell, seed)] = cfg
    return out


def expand(config: Mapping[str, Any]) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]]]:
    """(run folder -> RunConfig mapping, study -> its run folders) for every study of the config.

    The main study's folders include the runs of ``rule_methods`` (``rule_runs``), which are not in
    the first mapping: a workflow rule of their own writes them. Raises ValueError when two different
    configs would be written to one folder."""
    runs: dict[str, dict[str, Any]] = {}
    owner: dict[str, str] = {}
    members: dict[str, list[str]] = {}
    for name, spec in studies(config).items():
        defaults = deep_merge(config["run_defaults"], spec["run_defaults"])
        members[name] = []
        for method, block in spec["methods"].items():
            unknown = set(spec["grid_overrides"].get(method, {})) - set(spec["grid"])
            if unknown:
                raise ValueError(
                    f"studies.{name}.grid_overrides.{method}: {sorted(unknown)} are not grid axes"
                )
            axes = {**spec["grid"], **spec["grid_overrides"].get(method, {})}
            for values in itertools.product(*axes.values()):
                cell = dict(zip(axes, values, strict=True))
                # The folder is named by the values as the config spells them.
                values_cfg = _main_values(cell) if name == MAIN else resolve_iid(cell)
                for seed in spec["seeds"]:
                    cfg = cell_config(config, defaults, method, block, values_cfg, seed)
                    path = run_dir(method, cell, seed)
                    if path in runs:
                        try:
                            same = same_run(runs[path], cfg)
                        except ValueError as e:
                            raise ValueError(
                                f"run folder {path} (studies {owner[path]!r}, {name!r}): {e}"
                            ) from None
                        if not same:
                            raise ValueError(
                                f"run folder {path}: studies {owner[path]!r} and {name!r} declare different "
                                f"configs for it ({_differences(runs[path], cfg)}); add the axis that tells "
                                "them apart to one study's grid"
                            )
                    runs.setdefault(path, cfg)
                    owner.setdefault(path, name)
                    members[name].append(path)
    if MAIN in members:
        members[MAIN] += list(rule_runs(config))
    return runs, members
