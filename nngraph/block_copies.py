"""The copies of each top-level block use, as the torch back end generates them: one module call per copy.

Shared by the code generator (one class per block, a ModuleList over alike copies) and the cost model (a
value a copy reads stays alive until that copy's call returns, as the caller still holds it).
"""

from __future__ import annotations

from nngraph.ir import Graph


def copies_of(graph: Graph) -> dict[str, list[str]]:
    """Top-level block uses -> their copy prefixes (``h`` -> ``[h.0, h.1]``; an unrepeated use is its own copy)."""
    out: dict[str, list[str]] = {}
    for use in graph.block_uses:
        if use.repeat < 1 or any(use.name.startswith(p + ".") for ps in out.values() for p in ps):
            continue
        repeated = any(n.startswith(use.name + ".0.") for n in graph.nodes)
        out[use.name] = [f"{use.name}.{i}" for i in range(use.repeat)] if repeated else [use.name]
    return out
