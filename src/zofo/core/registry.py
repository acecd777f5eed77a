"""Registries of methods, models, tasks and partitioners, with "did you mean" on unknown names.

A new entry registers itself with a decorator in its own module; modules in the registered packages
are imported on first lookup, so adding a method is adding one file under ``zofo/methods``.

Methods outside zofo join the same way, from two sources read at that first lookup:

- the entry-point group ``zofo.methods``: an installed distribution declares, in its pyproject.toml,
  ``[project.entry-points."zofo.methods"] mine = "my_package.methods"``; the standard mechanism for
  plugins of an installed program, found by every process (``zofo run``, Snakemake's jobs) with nothing
  to set;
- the environment variable ``ZOFO_METHOD_PACKAGES``: importable module or package names, separated by
  commas, for code that is not installed (a folder on PYTHONPATH, a test's temporary package).

Each names a module or a package; a package's modules are all imported, as zofo's own are, and each
registers its method with ``@METHODS.register(name)``. A registered name may not be taken twice.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Generic, TypeVar

from zofo.core.errors import ConfigError, did_you_mean

T = TypeVar("T")


def import_all(name: str) -> None:
    """Import the module ``name`` and, if it is a package, every module in it whose name does not start
    with an underscore, so that their decorators run."""
    pkg = importlib.import_module(name)
    for mod in pkgutil.iter_modules(getattr(pkg, "__path__", [])):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{name}.{mod.name}")


class Registry(Generic[T]):
    def __init__(
        self,
        kind: str,
        package: str | None = None,
        entry_points: str | None = None,
        env: str | None = None,
    ):
        self.kind = kind
        self._package = package
        # Where entries from outside zofo come from: an entry-point group and an environment variable.
        self._entry_points = entry_points
        self._env = env
        self._entries: dict[str, T] = {}
        self._discovered = package is None and entry_points is None and env is None

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return deco

    def plugins(self) -> list[tuple[str, str]]:
        """(where it is named, module or package name) of every plugin source, in import order."""
        found: list[tuple[str, str]] = []
        if self._entry_points:
            for ep in metadata.entry_points(group=self._entry_points):
                found.append((f"entry point {ep.name!r} of group {self._entry_points!r}", ep.module))
        if self._env:
            for name in os.environ.get(self._env, "").split(","):
                if name.strip():
                    found.append((f"environment variable {self._env}", name.strip()))
        return found

    def _discover(self) -> None:
        # Import every module of the package, then the plugins, once, so that their decorators run.
        if self._discovered:
            return
        # Set first: the modules being imported import this registry, and may look names up.
        self._discovered = True
        try:
            if self._package:
                import_all(self._package)
            for where, name in self.plugins():
                try:
                    import_all(name)
                except Exception as e:
                    missing = getattr(e, "name", None) if isinstance(e, ModuleNotFoundError) else None
                    if missing and (name == missing or name.startswith(missing + ".")):
                        raise ConfigError(where, name, "an importable module or package name") from None
                    # An error inside the plugin: its own traceback says what, the note says whose.
                    e.add_note(f"while importing {self.kind} plugin {name!r}, named by the {where}")
                    raise
        except BaseException:
            self._discovered = False  # the next lookup tries again and raises the same error
            raise

    def get(self, name: str, key: str | None = None) -> T:
        self._discover()
        if name not in self._entries:
            raise ConfigError(
                key or self.kind,
                name,
                f"one of {sorted(self._entries)}" + did_you_mean(name, self._entries),
            )
        return self._entries[name]

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        self._discover()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


METHODS: Registry = Registry(
    "method", "zofo.methods", entry_points="zofo.methods", env="ZOFO_METHOD_PACKAGES"
)
TASKS: Registry = Registry("task", "zofo.assets.tasks")
PARTITIONERS: Registry = Registry("partitioner", "zofo.engine.partition")
