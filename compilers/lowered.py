"""A torch module lowered for a target: the planner's passes, then the torch back end.

::

    from nngraph.compilers.lowered import compile_for
    model, results = compile_for(graph, "cuda:sm90:bf16", mode="training")

Above both :mod:`nngraph.compilers.passes` (which needs no torch) and :mod:`nngraph.compilers.torch`
(which needs no planner): the one place that joins them.
"""

from __future__ import annotations

from typing import Any

from nngraph.ir import Graph

from .passes import PassResult, run_passes


def compile_for(graph: Graph, target: Any = "auto", mode: str = "inference", seed: int = 0,
                kv_len: int | None = None, dims: dict[str, int] | None = None) -> tuple[Any, list[PassResult]]:
    """Build the torch module of ``graph`` lowered for ``target`` (same parameter names and weights
    as ``nngraph.compilers.torch.build_module(graph, seed)``); returns (module, pass results)."""
    from nngraph.compilers.torch import build_module

    final, results = run_passes(graph, target, mode, kv_len, dims)
    return build_module(final, seed=seed), results
