"""Sample inputs for exporting and checking: random tensors whose integer values mean something.

:func:`nngraph.compilers.torch.check.random_inputs` bounds token ids by the embedding they feed; here,
in addition, integer inputs are drawn from the range their consumers need so that a parity check
exercises the real paths: attention ``lengths`` in 1..S (S = the key length of the attention that
reads them), ``edge_index`` node ids in 0..N-1 (N = the node count of the features beside it),
graph ids of ``global_pool``'s ``batch`` in 0..G-1, and every ``key_padding`` row keeps its
first key (a row of padding only is legal but tests nothing).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from nngraph.compilers.torch.check import DEFAULT_DIMS, DEFAULT_SYMBOLIC, concrete_dim, random_inputs


def symbols(graph: Any, include_optional: bool = False) -> list[str]:
    """Symbolic dim names of the graph inputs, in order of appearance."""
    out: list[str] = []
    for gi in graph.inputs.values():
        if gi.optional and not include_optional:
            continue
        for d in gi.type.shape:
            if isinstance(d, str) and d.isidentifier() and d not in out:
                out.append(d)
    return out


def default_sizes(graph: Any, given: Mapping[str, int] | None = None) -> dict[str, int]:
    """Sizes of every input symbol: ``given``, else batch 2, else 8."""
    given = dict(given or {})
    return {s: given.get(s, DEFAULT_DIMS.get(s, DEFAULT_SYMBOLIC)) for s in symbols(graph, True)} | given


#: trace sizes: values unlikely to equal a model constant (the TorchScript tracer maps traced
#: sizes to graph values by their int value, so a size equal to, say, a head count could be confused)
TRACE_SIZES = {"batch": 3}
TRACE_PRIMES = (13, 11, 17, 19, 23, 29, 31)


def trace_sizes(graph: Any, given: Mapping[str, int] | None = None) -> dict[str, int]:
    """Sizes to trace at: ``given``, else batch 3, else distinct primes 13, 11, 17, ... per symbol."""
    given = dict(given or {})
    out, primes = {}, iter(TRACE_PRIMES)
    for s in symbols(graph, True):
        out[s] = given[s] if s in given else TRACE_SIZES.get(s) or next(primes, DEFAULT_SYMBOLIC)
    return out | given


def _dim_of(graph: Any, ref: Any, axis: int, sizes: Mapping[str, int]) -> int | None:
    t = graph.type_of(ref) if ref is not None else None
    if t is None or len(t.shape) <= abs(axis):
        return None
    try:
        return concrete_dim(t.shape[axis], sizes)
    except Exception:  # noqa: BLE001 - a dim we cannot evaluate: no bound
        return None


def sample_inputs(graph: Any, sizes: Mapping[str, int] | None = None, seed: int = 0,
                  include_optional: bool = False) -> dict[str, torch.Tensor]:
    """Random graph inputs at ``sizes`` (see the module doc), reproducible by ``seed``."""
    sizes = default_sizes(graph, sizes)
    out = random_inputs(graph, sizes, seed, include_optional)
    gen = torch.Generator().manual_seed(seed + 7919)
    for node in graph.nodes.values():
        for slot, ref in node.inputs.items():
            if ref is None or ref.node not in out or ref.output is not None:
                continue
            name, t = ref.node, out[ref.node]
            if slot == "lengths" and node.op.startswith("attention"):
                src = node.inputs.get("context") or node.inputs.get("x")
                s = _dim_of(graph, src, 1, sizes)
                if s:
                    out[name] = torch.randint(1, s + 1, tuple(t.shape), generator=gen, dtype=t.dtype)
            elif slot == "key_padding" and t.dtype == torch.bool and t.dim() == 2:
                t = t.clone()
                t[:, 0] = False
                out[name] = t
            elif slot == "edge_index":
                n = _dim_of(graph, node.inputs.get("x"), 0, sizes)
                if n:
                    out[name] = torch.randint(0, n, tuple(t.shape), generator=gen, dtype=t.dtype)
            elif slot == "batch" and node.op == "global_pool":
                g = node.params.get("num_graphs")
                g = g if isinstance(g, int) else min(3, t.shape[0]) if t.shape[0] else 1
                out[name] = torch.sort(torch.randint(0, g, tuple(t.shape), generator=gen, dtype=t.dtype)).values
    return out
