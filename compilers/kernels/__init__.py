"""One kernel registry: one file per attention kernel, holding its decision and its code together.

Each module here registers a :class:`KernelDef` (discovered on first use, like op families):

* the decision the planner (:mod:`nngraph.compilers.passes.lowering`) asks: ``check(ctx) -> reason``
  (None: it applies; else the sentence ``--explain`` prints), ``config(ctx)`` (the plan tier's
  settings), ``cost(facts, target, mode, kv_len, config)`` (estimated ms of one call) and
  ``memory(facts, kv_len, config, mode)`` (bytes of [T, S]-sized tensors it materializes);
  ``ctx`` carries ``facts``, ``target`` and ``mode``;
* the code: ``run``, ``"module:function"`` of the torch core the lowered module calls with
  ``(module, tier, q, k, v, offset, batch, inputs, needs_grad)`` (None: the module's own reference
  forward). It is imported lazily, so the planner never imports torch, and this package imports
  neither the planner nor torch. ONNX kernels (``emit``) live in :mod:`nngraph.compilers.onnx.kernels`,
  one file each, and join the plan through the ``lower_onnx`` rule.

Targets are data: the profile entries a kernel reads are in ``compilers/targets/profiles.json``.
Adding a kernel = one file here (plus its profile entries).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from nngraph.discovery import Registry

#: the ops a torch attention kernel lowers by default
ATTENTION_OPS = ("attention", "attention_lowered")


@dataclass(frozen=True)
class KernelDef:
    """One torch attention kernel: decision (check, config, cost, memory) and code (``run``)."""

    name: str
    doc: str
    order: int                                        # display and tie-break order (reference first)
    check: Callable[[Any], str | None]
    config: Callable[[Any], dict[str, Any]]
    cost: Callable[..., float] | None = None
    memory: Callable[..., float] | None = None
    run: str | None = None                            # "module:function" of the torch core; None: the reference
    ops: tuple[str, ...] = ATTENTION_OPS
    dropout: bool = True                              # applies attention dropout itself (else such calls skip it)


_KERNELS = Registry(__name__, __path__, "kernel")


def register_kernel(k: KernelDef) -> KernelDef:
    """Register a kernel (names are unique)."""
    return _KERNELS.add(k.name, k)


def kernels() -> list[KernelDef]:
    """Every registered torch kernel, in ``order``."""
    return sorted(_KERNELS.all().values(), key=lambda k: k.order)


def kernel_names() -> tuple[str, ...]:
    """Names of the torch kernels in order (``reference`` first)."""
    return tuple(k.name for k in kernels())


def get_kernel(name: str) -> KernelDef | None:
    """The kernel named ``name`` (None if there is none)."""
    return _KERNELS.all().get(name)


_RUNS: dict[str, Callable[..., Any] | None] = {}


def run_of(name: str) -> Callable[..., Any] | None:
    """The torch core of kernel ``name`` (imported on first use); None for the reference forward."""
    if name not in _RUNS:
        k = get_kernel(name)
        if k is None or k.run is None:
            _RUNS[name] = None
        else:
            module, attr = k.run.split(":")
            _RUNS[name] = getattr(importlib.import_module(module), attr)
    return _RUNS[name]


def tiers_text(tiers: list[dict[str, Any]]) -> str:
    """``flex for kv >= 2048, else sdpa(mask), else reference (backward)``."""
    parts = []
    for t in tiers:
        name = t["kernel"] + (f"({t['variant']})" if t.get("variant") else "")
        if t["kernel"] == "reference" and parts:
            parts.append("reference as fallback")
        elif t.get("role") == "backward":
            parts.append(f"{name} when gradients are needed")
        else:
            parts.append(name + (f" for kv_len >= {t['min_kv']}" if t.get("min_kv") else ""))
    return ", else ".join(parts)
