"""The passes behind ``nngraph compile --target T [--mode M] [--explain]`` (kept out of cli.py)."""

from __future__ import annotations

from nngraph.ir import Graph

from ..targets import get_target
from . import run_passes
from .explain import explain as explain_decisions
from .explain import format_explain


def dims_of(dims: list[str]) -> dict[str, int]:
    """``["seq=4096", "batch=2"]`` -> ``{"seq": 4096, "batch": 2}`` (bad items are left to the forward check)."""
    out: dict[str, int] = {}
    for item in dims:
        name, _, value = item.partition("=")
        if value.strip().isdigit():
            out[name.strip()] = int(value)
    return out


def lower_for_cli(graph: Graph, target: str, mode: str, dims: list[str], explain: bool) -> tuple[Graph, str]:
    """(graph to build, text to print): the fused and lowered graph for a torch target (the graph itself for an
    ONNX Runtime target, whose kernels the exporter picks), with a summary of the changes or the explain table."""
    tgt = get_target(target)
    sizes = dims_of(dims)
    final, results = run_passes(graph, tgt, mode, dims=sizes)
    lines = []
    if explain:
        lines.append(format_explain(explain_decisions(graph, tgt, mode, dims=sizes), tgt, mode, dims=sizes))
    else:
        lines.append(f"target: {tgt.describe()}; mode: {mode}")
        for r in results:
            lines.extend(f"  {c}" for c in r.changes)
    if tgt.runtime != "torch":
        lines.append(f"note: {tgt.name} runs ONNX Runtime; the torch module below is the reference "
                     "(export with the ONNX back end to use these kernels)")
        final = graph
    return final, "\n".join(lines)
