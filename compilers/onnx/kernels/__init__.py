"""Choosing an ONNX attention kernel per node and target, and the library the kernels' emitters share.

The kernels are entries of the one kernel registry (:mod:`nngraph.compilers.kernels`, one file each, with
``runtime="onnxruntime"`` and an ``emit``ter in :mod:`nngraph.compilers.onnx.emitters`).
``attention_candidates()`` lists them in preference order (fastest first, as measured by
bench/onnx_latency.py on ORT CPU) as :class:`~.base.OnnxKernel` objects (``name``, ``doc``,
``applies(node, target) -> reason | None``, ``check``, ``why``, and the emitter's code).
:func:`choose` picks the first kernel that applies to a node and records every verdict for
``--explain``. The caller can force a kernel per node with ``force={node: name}`` (``nngraph export
--kernel NODE=NAME``; the choice is still checked: a kernel that does not apply is an error, not a
silent fallback).

* ``ort-gqa`` -- ``com.microsoft.GroupQueryAttention`` (causal decoders, RoPE/window built in)
* ``ort-mha`` -- ``com.microsoft.MultiHeadAttention`` (encoders, key padding, biases)
* ``onnx-attention`` -- the standard opset-23 ``Attention`` op
* ``decomposed`` -- MatMul/Softmax, always applies (the oracle)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .base import KVIO, KernelCtx, OnnxKernel, TargetInfo, kernel_named, registered, target_info, TARGETS
from .site import ATTENTION_OPS, AttentionSite, ExportOptions, MaskParts, site_of

__all__ = ["ATTENTION_OPS", "AttentionSite", "Choice", "ExportOptions", "KVIO", "KernelCtx", "OnnxKernel",
           "MaskParts", "TARGETS", "TargetInfo", "attention_candidates", "choose", "choose_all", "kernel_named",
           "site_of", "target_info"]

#: preference order: the first kernel that applies is chosen. Measured by bench/onnx_latency.py (ORT 1.31,
#: 2 CPU threads, batch 1, 2 layers of GPT-2/BERT shape, ms per forward): causal GPT-2 at seq 2048 --
#: GroupQueryAttention 552, MultiHeadAttention 728, Attention 777, decomposed 961; BERT at 2048 --
#: MultiHeadAttention 849, Attention 886, decomposed 999; at seq 128-512 the fused ops are 0-12% faster
#: than the decomposed graph (Attention slightly ahead of the contrib ops there).
ORDER: tuple[OnnxKernel, ...] = tuple(registered())  # by each kernel's ``order`` in the registry
#: below this expected sequence length the opset-23 Attention op goes before MultiHeadAttention: the
#: measured order flips between 128 (Attention ahead) and 2048 (MultiHeadAttention ahead; about even at 512)
SHORT_SEQ = 512


def order_for(options: ExportOptions) -> tuple[OnnxKernel, ...]:
    """The preference order for an export: :data:`ORDER`, with Attention before MultiHeadAttention when the
    export says it expects sequences shorter than :data:`SHORT_SEQ` (``expected_seq``)."""
    if options.expected_seq is None or options.expected_seq >= SHORT_SEQ:
        return ORDER
    order = list(ORDER)
    i, j = order.index(kernel_named("ort-mha")), order.index(kernel_named("onnx-attention"))
    order[i], order[j] = order[j], order[i]
    return tuple(order)


def _length_note(options: ExportOptions, kernel: OnnxKernel) -> str:
    if options.expected_seq is None or kernel.name not in ("ort-mha", "onnx-attention"):
        return ""
    side = "shorter" if options.expected_seq < SHORT_SEQ else "not shorter"
    return (f"; chosen for the expected sequence length {options.expected_seq} ({side} than {SHORT_SEQ}: "
            f"{'Attention' if options.expected_seq < SHORT_SEQ else 'MultiHeadAttention'} measured faster there)")


def attention_candidates() -> list[OnnxKernel]:
    """The ONNX attention kernels in preference order (the lowering pass's provider interface)."""
    return list(ORDER)


@dataclass
class Choice:
    """The kernel chosen for one attention node, why, and why each other candidate was not."""

    node: str
    kernel: OnnxKernel
    reason: str
    site: AttentionSite
    verdicts: list[tuple[str, str | None]] = field(default_factory=list)   # (kernel, reason it does not apply)
    forced: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"node": self.node, "kernel": self.kernel.name, "onnx_op": self.kernel.onnx_op, "reason": self.reason,
                "forced": self.forced, "mask": self.site.parts.describe(), "position": self.site.position,
                "rejected": {k: r for k, r in self.verdicts if r is not None and k != self.kernel.name}}


class KernelError(ValueError):
    """A forced kernel that does not apply, or an unknown kernel name."""


def choose(node: Any, target: Any, options: ExportOptions | None = None, force: str | None = None) -> Choice:
    """The kernel for IR attention ``node`` on ``target``: ``force`` if given (and applicable), else the first that applies."""
    options = options or ExportOptions()
    info = target_info(target)
    site = site_of(node)
    verdicts = [(k.name, k.check(site, info, options)) for k in ORDER]
    if force is not None:
        names = [k.name for k in ORDER]
        if force not in names:
            raise KernelError(f"unknown attention kernel '{force}' for node '{node.name}' (known: {', '.join(names)})")
        reason = dict(verdicts)[force]
        if reason is not None:
            raise KernelError(f"attention kernel '{force}' does not apply to node '{node.name}' on {info.name}: {reason}")
        kernel = kernel_named(force)
        return Choice(node.name, kernel, "forced: " + kernel.why(site, info, options), site, verdicts, True)
    for k in order_for(options):
        if dict(verdicts)[k.name] is None:
            return Choice(node.name, k, k.why(site, info, options) + _length_note(options, k), site, verdicts)
    raise AssertionError("the decomposed kernel always applies")


def choose_all(graph: Any, target: Any, options: ExportOptions | None = None,
               force: dict[str, str] | None = None) -> dict[str, Choice]:
    """A :class:`Choice` per attention node of ``graph`` (``force``: node name or ``*`` -> kernel name)."""
    force = force or {}
    out = {}
    for node in graph.nodes.values():
        if node.op in ATTENTION_OPS:
            out[node.name] = choose(node, target, options, force.get(node.name, force.get("*")))
    return out
