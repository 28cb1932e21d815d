"""Collapsed repeats for drawing: every repeated block use becomes one node ``NAME: BLOCK ×N``.

GPT-2 small drawn in full is 12 copies of a decoder layer (a 575×14898 px picture); collapsed, it is
the embedding, one ``h: decoder_layer ×12`` node and the head. The collapsed node reads what the copies
read from outside, carries their summed parameters, and its output is the value the rest of the graph
reads from inside the use (the last copy's output). Drawing only: the graph itself is not changed.
"""

from __future__ import annotations

from dataclasses import replace

from .inspect import _under
from .ir import BlockUse, Graph, Node, Ref


def _outermost(graph: Graph) -> list[BlockUse]:
    reps = [u for u in graph.block_uses if u.repeat > 1]
    return [u for u in reps if not any(o is not u and _under(u.name, o.name) for o in reps)]


def collapse_repeats(graph: Graph) -> Graph:
    """A copy of ``graph`` for drawing with each outermost repeated block use folded into one node."""
    owner = {}
    uses = _outermost(graph)
    for use in uses:
        owner.update({name: use for name in graph.nodes if _under(name, use.name)})

    def remap(ref: Ref | None) -> Ref | None:
        return ref if ref is None or ref.node not in owner else Ref(owner[ref.node].name)

    nodes: dict[str, Node] = {}
    for name, node in graph.nodes.items():
        use = owner.get(name)
        if use is None:
            nodes[name] = replace(node, inputs={k: remap(r) for k, r in node.inputs.items()},
                                  variadic=[remap(r) for r in node.variadic])
            continue
        folded = nodes.get(use.name) or Node(use.name, f"{use.block} ×{use.repeat}", {}, {}, use.pos,
                                             scope=tuple(use.name.split(".")[:-1]), n_params=0)
        nodes[use.name] = folded
        folded.n_params = (folded.n_params or 0) + (node.n_params or 0)
        outside = [r for r in node.all_refs() if r.node not in owner or owner[r.node] is not use]
        folded.variadic.extend(r for r in map(remap, outside) if r not in folded.variadic)
    for name, node in graph.nodes.items():  # the folded node's output: the value read from outside the use
        for ref in node.all_refs():
            use = owner.get(ref.node)
            if use is not None and owner.get(name) is not use:
                nodes[use.name].outputs = {"out": graph.type_of(ref)}
    for ref in graph.outputs.values():
        if ref.node in owner:
            nodes[owner[ref.node].name].outputs = {"out": graph.type_of(ref)}
    kept = [u for u in graph.block_uses if not any(_under(u.name, c.name) for c in uses)]
    return replace(graph, nodes=nodes, outputs={k: remap(r) for k, r in graph.outputs.items()}, block_uses=kept)
