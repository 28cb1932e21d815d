"""Lowering rule: ONNX Runtime attention kernels (for ``ort-*`` targets), provided by nngraph.compilers.onnx.

The ONNX back end owns these kernels (opset-23 ``Attention``, ORT contrib ``MultiHeadAttention``,
``GroupQueryAttention``, ...; one file each in ``nngraph.compilers.onnx.kernels``, whose targets are in
compilers/targets/profiles.json). This rule adapts them to the lowering table: that module's
``attention_candidates()`` gives objects with ``name``, ``doc`` and ``applies(node, target) -> reason |
None`` (``node``: the IR node, ``target``: a :class:`nngraph.compilers.targets.Target`), optionally
``config(node, target) -> dict``; each becomes a
candidate here, checked only on ONNX Runtime targets and taken in the order given (ONNX kernels
have no cost model: the exporter's order is its preference). Without that module this rule
reports why it cannot help, and ``ort-*`` targets keep the reference (decomposed MatMul/Softmax).
"""

from __future__ import annotations

import importlib
from typing import Any

from ..rewrite import Match, Rule
from . import register

OPS = ("attention", "attention_lowered")


def _match(graph, node):
    return Match(node.name, (node.name,))


def provider() -> Any:
    """The ONNX kernel registry (``nngraph.compilers.onnx.kernels``: one file per kernel), or None without it."""
    try:
        return importlib.import_module("nngraph.compilers.onnx.kernels")
    except ImportError:
        return None


def _adapt(cand: Any) -> Rule:
    def check(graph, match, ctx):
        if ctx.target.runtime != "onnxruntime":
            return f"an ONNX Runtime kernel; target {ctx.target.name} runs torch"
        return cand.applies(graph.nodes[match.node], ctx.target)

    def rewrite(graph, match, ctx):
        extra = cand.config(graph.nodes[match.node], ctx.target) if hasattr(cand, "config") else {}
        return {"kernel": str(cand.name), "runtime": "onnxruntime", **(extra or {})}

    return Rule(f"lower_onnx_{cand.name}", str(getattr(cand, "doc", cand.name)), _match, check, rewrite,
                kernel=str(cand.name), ops=OPS)


def expand() -> list[Rule]:
    """One rule per ONNX kernel candidate (empty without nngraph.compilers.onnx)."""
    prov = provider()
    return [_adapt(c) for c in prov.attention_candidates()] if prov is not None else []


def _check(graph, match, ctx):
    if ctx.target.runtime != "onnxruntime":
        return f"ONNX Runtime kernels; target {ctx.target.name} runs torch"
    return "nngraph.compilers.onnx exposes no attention_candidates() here: the export keeps the decomposed ops"


def _rewrite(graph, match, ctx):
    return {"kernel": "onnx"}


RULE = register(Rule("lower_onnx", __doc__.splitlines()[0], _match, _check, _rewrite, kernel="onnx", ops=OPS,
                     expand=expand))
