"""Plugin discovery: a package whose modules register things when imported (op families, back-end ops)."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Iterable


def import_submodules(package: str, path: Iterable[str]) -> None:
    """Import every module of ``package`` (at ``path``) in name order; names starting with ``_`` are helpers, skipped."""
    for info in sorted(pkgutil.iter_modules(list(path)), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")
