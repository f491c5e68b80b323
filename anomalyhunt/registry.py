"""Name -> implementation registries, so that a new method is one new module and no edit to the pipeline."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A registry of implementations of one kind of thing (template generator, discriminator, ...).

    Implementations register themselves with ``@REGISTRY.register("name")``. ``discover(package)`` imports every
    module of a package once, so dropping a new file into ``anomalyhunt/models/`` is enough to make it available.
    """

    def __init__(self, kind: str, package: str | None = None) -> None:
        self.kind = kind
        self._package = package
        self._items: dict[str, T] = {}
        self._discovered = False

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            if isinstance(obj, type):
                obj.registered_name = name  # type: ignore[attr-defined]  # messages name the method as users do
            return obj

        return decorator

    def _discover(self) -> None:
        if self._discovered or self._package is None:
            return
        self._discovered = True
        pkg = importlib.import_module(self._package)
        for info in pkgutil.iter_modules(pkg.__path__):
            importlib.import_module(f"{self._package}.{info.name}")

    def get(self, name: str) -> T:
        self._discover()
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; available: {', '.join(sorted(self._items))}") from None

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        self._discover()
        return name in self._items
