"""One small write-once registry for labs, models and datasets, in the style of timm's `_registry`.

A registry module is a leaf: it imports nothing from the project. Each package's `__init__` imports
the modules that register into it, so `import backend.labs` fills the lab registry and nothing
imports in a circle.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class NotRegistered(KeyError):
    """No entry of that name; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    def __init__(self, kind: str, missing: type[NotRegistered] = NotRegistered) -> None:
        self.kind = kind  # "lab", "model", "dataset": used in messages
        self._missing = missing
        self._items: dict[str, T] = {}

    def add(self, name: str, item: T) -> T:
        """Register once: two modules cannot silently shadow each other."""
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item
        return item

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise self._missing(f"unknown {self.kind} {name!r}; known {self.kind}s: {known}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[T]:
        return iter(list(self._items.values()))

    def names(self) -> list[str]:
        return list(self._items)


def import_submodules(package: str) -> None:
    """Import every module of a package, so each registers what it defines (one file per addition)."""
    import importlib
    import pkgutil

    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"{package}.{info.name}")
