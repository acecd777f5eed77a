"""Registries of methods, models, tasks and partitioners, with "did you mean" on unknown names.

A new entry registers itself with a decorator in its own module; modules in the registered packages
are imported on first lookup, so adding a method is adding one file under ``zofo/methods``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from zofo.core.errors import ConfigError, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, package: str | None = None):
        self.kind = kind
        self._package = package
        self._entries: dict[str, T] = {}
        self._discovered = package is None

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return deco

    def _discover(self) -> None:
        # Import every module of the package once so that their decorators run.
        if self._discovered:
            return
        self._discovered = True
        pkg = importlib.import_module(self._package)
        for mod in pkgutil.iter_modules(getattr(pkg, "__path__", [])):
            if not mod.name.startswith("_"):
                importlib.import_module(f"{self._package}.{mod.name}")

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


METHODS: Registry = Registry("method", "zofo.methods")
TASKS: Registry = Registry("task", "zofo.assets.tasks")
PARTITIONERS: Registry = Registry("partitioner", "zofo.engine.partition")
