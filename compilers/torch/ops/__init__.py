"""Torch implementations of nngraph ops, one module per family.

Every module here registers its ops with :func:`nngraph.compilers.torch.registry.torch_op`
on import; :func:`load_all` discovers them, so adding a family's torch
implementation means adding one module (names starting with ``_`` are helpers
and are not auto-imported).
"""

from __future__ import annotations

from nngraph.discovery import import_submodules

_loaded = False


def load_all() -> None:
    """Import every family module (once), which registers their implementations."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import_submodules(__name__, __path__)
