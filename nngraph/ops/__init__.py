"""Primitive families. Every module here registers its ops on import.

Adding a family means adding a module: :func:`load_all` discovers it, so no
central list changes.
"""

from __future__ import annotations

from ..discovery import import_submodules

_loaded = False


def load_all() -> None:
    """Import every family module (once), which registers their ops."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import_submodules(__name__, __path__)
