"""Plugin discovery: a package whose modules register things when imported (op families, back-end ops)."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Iterable


def import_submodules(package: str, path: Iterable[str]) -> None:
    """Import every module of ``package`` (at ``path``) in name order; names starting with ``_`` are helpers, skipped."""
    for info in sorted(pkgutil.iter_modules(list(path)), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")


class Registry:
    """Named entries that the modules of one package register on import; the package is imported on first read."""

    def __init__(self, package: str, path: Iterable[str], what: str):
        self.package, self.path, self.what = package, list(path), what
        self.entries: dict[str, Any] = {}
        self._loaded = False

    def add(self, name: str, item: Any) -> Any:
        """Register ``item`` as ``name`` (names are unique)."""
        if name in self.entries:
            raise ValueError(f"{self.what} '{name}' registered twice")
        self.entries[name] = item
        return item

    def all(self) -> dict[str, Any]:
        """Every entry, in registration order (the package's modules imported first)."""
        if not self._loaded:
            self._loaded = True
            import_submodules(self.package, self.path)
        return self.entries
