"""Torch implementations of nngraph ops, one module per family.

Every module here registers its ops with :func:`compilers.torch.registry.torch_op`
on import; :func:`load_all` discovers them, so adding a family's torch
implementation means adding one module (names starting with ``_`` are helpers
and are not auto-imported).
"""

from __future__ import annotations

import importlib
import pkgutil

_loaded = False


def load_all() -> None:
    """Import every family module (once), which registers their implementations."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
