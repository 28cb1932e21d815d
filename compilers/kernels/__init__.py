"""One kernel registry: one file per attention kernel, holding its decision and its code together.

Each module here registers a :class:`KernelDef` (discovered on first use, like op families):

* the decision the planner (:mod:`nngraph.compilers.passes.lowering`) asks: ``check(ctx) -> reason``
  (None: it applies; else the sentence ``--explain`` prints), ``config(ctx)`` (the plan tier's
  settings), ``cost(facts, target, mode, kv_len, config)`` (estimated ms of one call) and
  ``memory(facts, kv_len, config, mode)`` (bytes of [T, S]-sized tensors it materializes);
  ``ctx`` carries ``facts``, ``target`` and ``mode``;
* the code: ``run``, ``"module:function"`` of the torch core the lowered module calls with
  ``(module, tier, q, k, v, offset, batch, inputs, needs_grad)`` (None: the module's own reference
  forward); or, for an ONNX kernel (``runtime="onnxruntime"``), ``emit``, ``"module:class"`` of its
  emitter in :mod:`nngraph.compilers.onnx.emitters` (the export-time forward, the placeholder's torch
  reference and the ONNX node(s) it becomes). Both are imported lazily, so the planner imports neither
  torch nor onnx, and this package imports neither the planner nor torch.

An ONNX kernel's ``check(ctx)`` reads ``ctx.site`` (:class:`nngraph.compilers.onnx.kernels.site.AttentionSite`),
``ctx.target`` (a ``TargetInfo``) and ``ctx.options`` (``ExportOptions``); ``why(ctx)`` says why it is a
good choice when chosen. It has no cost model: ``order`` is the exporter's measured preference (fastest
first), and ONNX kernels come after the torch ones. The planner adapts every kernel through one rule
(:mod:`nngraph.compilers.passes.rules.lower_kernels`); the exporter reads the ONNX ones through
:func:`nngraph.compilers.onnx.kernels.attention_candidates`.

Targets are data: the profile entries a kernel reads are in ``compilers/targets/profiles.json``.
Adding a kernel = one file here (plus its profile entries, or its emitter for ONNX).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from nngraph.discovery import Registry

#: the ops an attention kernel lowers by default
ATTENTION_OPS = ("attention", "attention_lowered")


@dataclass(frozen=True)
class KernelDef:
    """One attention kernel: decision (check, config, cost, memory) and code (torch ``run`` or ONNX ``emit``)."""

    name: str
    doc: str
    order: int                                        # display and tie-break order (reference first)
    check: Callable[[Any], str | None]
    config: Callable[[Any], dict[str, Any]] | None = None   # torch: the plan tier's settings
    cost: Callable[..., float] | None = None
    memory: Callable[..., float] | None = None
    run: str | None = None                            # "module:function" of the torch core; None: the reference
    ops: tuple[str, ...] = ATTENTION_OPS
    dropout: bool = True                              # applies attention dropout itself (else such calls skip it)
    runtime: str = "torch"                            # its back end: torch | onnxruntime (the ONNX exporter's files)
    emit: str | None = None                           # ONNX: "module:class" of the emitter (forward, reference, emit)
    onnx_op: str = ""                                 # ONNX: the op it emits (shown by --explain and the metadata)
    min_opset: int | None = None                      # ONNX: the default-domain opset that op needs (None: any)
    why: Callable[[Any], str] | None = None           # ONNX: why it is a good choice, when chosen

    @property
    def rule(self) -> str:
        """The planner's rule name: ``lower_<name>``, ``lower_onnx_<name>`` for an ONNX Runtime kernel."""
        return f"lower_onnx_{self.name}" if self.runtime == "onnxruntime" else f"lower_{self.name}"


_KERNELS = Registry(__name__, __path__, "kernel")


def register_kernel(k: KernelDef) -> KernelDef:
    """Register a kernel (names are unique)."""
    return _KERNELS.add(k.name, k)


def kernels(runtime: str | None = None) -> list[KernelDef]:
    """Every registered kernel (``runtime``: only those serving it), in ``order``."""
    return sorted((k for k in _KERNELS.all().values() if runtime in (None, k.runtime)), key=lambda k: k.order)


def kernel_names(runtime: str | None = None) -> tuple[str, ...]:
    """Names of the kernels in order (``reference`` first, the ONNX kernels last)."""
    return tuple(k.name for k in kernels(runtime))


def get_kernel(name: str) -> KernelDef | None:
    """The kernel named ``name`` (None if there is none)."""
    return _KERNELS.all().get(name)


_CODE: dict[tuple[str, str], Any] = {}


def _code(name: str, field: str) -> Any:
    """The object kernel ``name`` names in ``field`` ("module:attr", imported on first use), or None."""
    if (name, field) not in _CODE:
        k = get_kernel(name)
        ref = getattr(k, field) if k is not None else None
        module, _, attr = (ref or "").partition(":")
        _CODE[name, field] = getattr(importlib.import_module(module), attr) if ref else None
    return _CODE[name, field]


def run_of(name: str) -> Callable[..., Any] | None:
    """The torch core of kernel ``name`` (imported on first use); None for the reference forward."""
    return _code(name, "run")


def emitter_of(name: str) -> Any:
    """The ONNX emitter class of kernel ``name`` (imported on first use); None for a torch kernel."""
    return _code(name, "emit")


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
