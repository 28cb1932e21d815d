"""The fusion pass: attention written out of primitive ops -> fused ``sdpa`` nodes (before lowering).

Runs every ``fuse_*`` rule of :mod:`.rules` (today: :mod:`.rules.fuse_attention`) through the
rule engine (:func:`.rewrite.apply_rules`): matches are collected, then applied once. Returns a
:class:`~.rewrite.PassResult` with the new graph, one :class:`~.rewrite.Change` per fused
attention (the node it produced and the nodes it removed) and the declined matches with their
reasons. The graph's parameter count is unchanged (the covered ops have no parameters).
"""

from __future__ import annotations

from nngraph.ir import Graph

from .rewrite import PassResult, apply_rules
from .rules import rules


def fuse(graph: Graph) -> PassResult:
    """Fold written-out attention into ``sdpa`` nodes; see the module doc."""
    return apply_rules(graph, rules("fuse"), None, "fuse")


__all__ = ["fuse"]
