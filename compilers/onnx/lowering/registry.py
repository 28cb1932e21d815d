"""The per-op ONNX lowering registry: one ``@lowering`` / :func:`declare` per op, in the op's lowering module.

The TorchScript exporter records the ops one run executes, so anything decided in Python from
run-time *values* -- a loop over the sequence, ``.item()``, ``.tolist()``, arithmetic on a token
count -- would be frozen at the sample's sizes. An op whose torch form does that registers here how
its export differs (:class:`Lowering`); the export reads nothing else:

* ``how`` -- one line for ``--explain`` and the file's ``lowering`` metadata (None: not reported);
* ``forward(module, io, *args)`` -- the op's module forward while tracing (``kv_only``: only with a KV cache);
* ``function`` -- a traceable stand-in for the torch back end's function of the same name, declared
  ``@replaceable`` there (:mod:`nngraph.compilers.torch.trace_hooks`);
* ``needs(node) -> (opset, why) | None`` -- the default-domain opset its exported form needs above the
  export's floor (:mod:`nngraph.compilers.onnx.opsets`);
* ``stateful`` -- it carries state that is not a key/value cache, so ``--kv-cache`` refuses it.

Placeholder ops (``ai.nngraph::<op>`` nodes a lowering's forward emits) register their ONNX form with
``@emits(op_type)``; :mod:`nngraph.compilers.onnx.rewrite` swaps them after the export.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any, Callable

Need = Callable[[Any], "tuple[int, str] | None"]


@dataclass(frozen=True)
class Lowering:
    """How one IR op's export differs from its torch forward (see the module doc)."""

    op: str
    how: str | None = None
    forward: Callable[..., Any] | None = None
    function: Callable[..., Any] | None = None
    needs: Need | None = None
    stateful: bool = False
    kv_only: bool = False


LOWERINGS: dict[str, Lowering] = {}
EMITTERS: dict[str, Callable[..., list[Any]]] = {}


def declare(op: str, how: str | None = None, *, forward: Callable[..., Any] | None = None,
            function: Callable[..., Any] | None = None, needs: Need | None = None, stateful: bool = False,
            kv_only: bool = False) -> Lowering:
    """Register ``op``'s lowering (an op registers once)."""
    if op in LOWERINGS:
        raise ValueError(f"op '{op}' has two ONNX lowerings")
    entry = LOWERINGS[op] = Lowering(op, how, forward, function, needs, stateful, kv_only)
    return entry


def lowering(op: str, how: str | None = None, *, replaces_function: bool = False, needs: Need | None = None,
             stateful: bool = False, kv_only: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: the function is ``op``'s tracing forward, or with ``replaces_function`` the stand-in of the
    torch back end's replaceable function named ``op``."""
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        declare(op, how, forward=None if replaces_function else fn, function=fn if replaces_function else None,
                needs=needs, stateful=stateful, kv_only=kv_only)
        return fn

    return deco


def emits(op_type: str) -> Callable[[Callable[..., list[Any]]], Callable[..., list[Any]]]:
    """Decorator: ``emit(node, names) -> [NodeProto]`` replaces the ``ai.nngraph::<op_type>`` placeholder."""
    def deco(fn: Callable[..., list[Any]]) -> Callable[..., list[Any]]:
        EMITTERS[op_type] = fn
        return fn

    return deco


_found = False


def discover() -> dict[str, Lowering]:
    """Import every module of this package once (each registers its ops); the registry."""
    global _found
    if not _found:
        package = importlib.import_module(__package__ or "")
        for info in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package.__name__}.{info.name}")
        _found = True
    return LOWERINGS
