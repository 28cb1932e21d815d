"""Trace-time replacements of torch back-end functions: the documented hook an exporter uses instead of patching.

A tracer (the ONNX exporter's) records the ops one run executes, so a function of the torch back end
that decides something in Python from run-time *values* (``batch.max().item()`` in
:func:`nngraph.compilers.torch.ops.graph_nn.global_pool`) would freeze it at the sample's values. Such
a function is declared ``@replaceable("name")``; inside ``with replacing({"name": fn}):`` calls to it
run ``fn`` (same arguments, same result, traceable), outside they run the function itself.

Why a plain dict and not a ContextVar: the generated forward calls these functions under
``torch.compile`` too, where a dict lookup is guarded cheaply and a ContextVar read breaks the graph.
The table is only non-empty inside :func:`replacing` (an export), which restores it on exit.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Iterator, Mapping

#: name -> replacement, active only inside :func:`replacing`
_ACTIVE: dict[str, Callable[..., Any]] = {}
#: names declared replaceable (a replacement for an unknown name is a mistake, not a no-op)
REPLACEABLE: set[str] = set()


def replaceable(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a back-end function replaceable while tracing under ``name``."""
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        REPLACEABLE.add(name)

        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            return _ACTIVE.get(name, fn)(*args, **kwargs)

        return call

    return deco


@contextlib.contextmanager
def replacing(table: Mapping[str, Callable[..., Any]]) -> Iterator[None]:
    """Run the replaceable functions named in ``table`` as its functions for the duration of the block."""
    unknown = set(table) - REPLACEABLE
    if unknown:
        raise KeyError(f"not replaceable: {sorted(unknown)} (declared: {sorted(REPLACEABLE)})")
    saved = dict(_ACTIVE)
    _ACTIVE.update(table)
    try:
        yield
    finally:
        _ACTIVE.clear()
        _ACTIVE.update(saved)
