"""Caps that keep hostile or mistaken specs from costing memory or time.

Everything is checked by the front end before any tensor is allocated; every
cap can be raised from the CLI (``--max-params`` …) or the Python API.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .yamlsrc import YamlLimits


@dataclass(frozen=True)
class Limits:
    """Front-end limits: file shape, graph size, tensor and parameter sizes."""

    yaml: YamlLimits = field(default_factory=YamlLimits)
    max_params: int = 20_000_000_000
    max_dim: int = 2**31 - 1
    max_repeat: int = 1024
    max_nodes: int = 50_000
    max_import_depth: int = 16


DEFAULT_LIMITS = Limits()
