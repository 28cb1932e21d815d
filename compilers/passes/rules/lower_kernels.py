"""Lowering rules: the kernels of the kernel registry (:mod:`nngraph.compilers.kernels`), one rule each.

Each registered kernel (torch: reference, sdpa, local, flex; ONNX Runtime: ort-gqa, ort-mha,
onnx-attention, decomposed; one file per kernel holding its check and its code) becomes the rule
``kernel.rule`` (``lower_<kernel>``; ``lower_onnx_<kernel>`` for ONNX Runtime ones): the pattern is any
node of the kernel's ops, the check and rewrite are the kernel's. An ONNX kernel is checked only on
ONNX Runtime targets, on the node as the exporter sees it (:func:`nngraph.compilers.onnx.kernels.site.site_of`,
pure data, imported on first use: the planner imports neither torch nor onnx); it has no cost model,
so the plan takes the ONNX kernels in the registry's order (the exporter's measured preference).
"""

from __future__ import annotations

from typing import Any

from ...kernels import KernelDef, kernels
from ..rewrite import Match, Rule
from . import register


def _match(graph, node):
    return Match(node.name, (node.name,))


def _onnx_check(k: KernelDef, node: Any, target: Any) -> str | None:
    """An ONNX Runtime kernel's verdict on an IR node (default export options), as the exporter decides it."""
    if target.runtime != k.runtime:
        return f"an ONNX Runtime kernel; target {target.name} runs torch"
    from ...onnx.kernels.base import kernel_named

    return kernel_named(k.name).applies(node, target)


def _adapt(k: KernelDef) -> Rule:
    def check(graph: Any, match: Match, ctx: Any) -> str | None:
        return _onnx_check(k, graph.nodes[match.node], ctx.target) if k.emit else k.check(ctx)

    def rewrite(graph: Any, match: Match, ctx: Any) -> dict[str, Any]:
        if k.emit:  # chosen at export: the plan records the kernel and its op
            return {"kernel": k.name, "runtime": k.runtime, "onnx_op": k.onnx_op}
        return k.config(ctx)

    return Rule(k.rule, k.doc, _match, check, rewrite, cost=k.cost, memory=k.memory, kernel=k.name, ops=k.ops)


def expand() -> list[Rule]:
    """One rule per registered kernel, in the registry's order."""
    return [_adapt(k) for k in kernels()]


def _never(graph, match, ctx):
    return "stands for the registered kernels"


RULE = register(Rule("lower_kernels", __doc__.splitlines()[0], _match, _never, lambda g, m, c: {}, ops=(),
                     expand=expand))
