"""Graph passes of the back ends: fusion (written-out attention -> ``sdpa``) and lowering (kernel per target).

::

    from nngraph.compilers.passes import fuse, lower, explain, format_explain
    fused = fuse(graph)                         # PassResult: .graph, .changes, .skipped
    lowered = lower(fused.graph, "cpu", "inference")
    print(format_explain(explain(graph, "cpu"), "cpu"))

Both passes are written as rules (:mod:`.rewrite`: pattern, check returning the reason a rule does
not apply, rewrite), one rule per module in :mod:`.rules`; each pass collects its edits, applies
them once and returns what it changed. Targets come from :mod:`nngraph.compilers.targets` (profiles as
data). The lowered torch modules live in ``compilers/torch/ops/attention_kernels*.py``; the planner imports
none of them (:func:`nngraph.compilers.lowered.compile_for` joins the two: lower, then build the module).
"""

from __future__ import annotations

from typing import Any

from nngraph.ir import Graph

from .explain import explain, explain_data, format_explain
from .fusion import fuse
from .lowering import Decision, decide, decisions, lower
from .rewrite import Change, PassResult, Rule


def run_passes(graph: Graph, target: Any = "auto", mode: str = "inference",
               kv_len: int | None = None, dims: dict[str, int] | None = None) -> tuple[Graph, list[PassResult]]:
    """Fusion then lowering; returns the final graph and each pass's result (in order)."""
    fused = fuse(graph)
    lowered = lower(fused.graph, target, mode, kv_len, dims)
    return lowered.graph, [fused, lowered]


__all__ = ["Change", "Decision", "PassResult", "Rule", "decide", "decisions", "explain", "explain_data",
           "format_explain", "fuse", "lower", "run_passes"]
