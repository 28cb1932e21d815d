"""Caps that keep hostile or mistaken specs from costing memory or time.

Everything is checked by the front end before any tensor is allocated; every
cap can be raised from the CLI (``--max-params`` …) or the Python API.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .yamlsrc import YamlLimits


def physical_memory() -> int:
    """Bytes of physical memory of this machine (0 when the OS does not say: no memory check then)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not a POSIX system, or the names are unknown
        return 0


@dataclass(frozen=True)
class Limits:
    """Front-end limits: file shape, graph size, tensor and parameter sizes."""

    yaml: YamlLimits = field(default_factory=YamlLimits)
    max_params: int = 20_000_000_000
    max_dim: int = 2**31 - 1
    max_repeat: int = 1024
    max_nodes: int = 50_000
    max_import_depth: int = 16
    max_memory: int = field(default_factory=physical_memory)  # bytes; weights and inputs must fit (--max-memory)
    #: False for commands that only describe a spec (validate, inspect, graph): a model over ``max_memory`` is
    #: a warning there -- a CI machine validates a 13e9-parameter spec it could never build -- and an error
    #: for the commands that build it (compile, train, export, sample)
    memory_refuses: bool = True


DEFAULT_LIMITS = Limits()


def parse_dims(items: list[str] | None, limits: Limits = DEFAULT_LIMITS) -> dict[str, int]:
    """``["batch=4", "seq=16"]`` -> ``{"batch": 4, "seq": 16}`` (the ``--dim`` option); raises ValueError naming
    the bad item: not NAME=INT, below 1 (an empty tensor), or over ``limits.max_dim``."""
    sizes: dict[str, int] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier() or not value.strip().isdigit():
            raise ValueError(f"--dim '{item}' is not NAME=INT (e.g. --dim seq=16)")
        size = int(value)
        if size < 1:
            raise ValueError(f"--dim '{item}': a dim is at least 1 (a dim of 0 makes every tensor through it empty)")
        if size > limits.max_dim:
            raise ValueError(f"--dim '{item}': {size:,} is more than the limit of {limits.max_dim:,} for one dim")
        sizes[key.strip()] = size
    return sizes
