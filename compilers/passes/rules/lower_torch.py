"""Lowering rules: the torch kernels of the kernel registry (:mod:`nngraph.compilers.kernels`), one rule each.

Each registered kernel (reference, sdpa, local, flex, ...: one file per kernel holding its check,
config, cost, memory and torch code) becomes the rule ``lower_<kernel>``: the pattern is any node
of the kernel's ops, the check and rewrite are the kernel's.
"""

from __future__ import annotations

from typing import Any

from ...kernels import KernelDef, kernels
from ..rewrite import Match, Rule
from . import register


def _match(graph, node):
    return Match(node.name, (node.name,))


def _adapt(k: KernelDef) -> Rule:
    def check(graph: Any, match: Match, ctx: Any) -> str | None:
        return k.check(ctx)

    def rewrite(graph: Any, match: Match, ctx: Any) -> dict[str, Any]:
        return k.config(ctx)

    return Rule(f"lower_{k.name}", k.doc, _match, check, rewrite, cost=k.cost, memory=k.memory, kernel=k.name,
                ops=k.ops)


def expand() -> list[Rule]:
    """One rule per registered torch kernel, in the registry's order."""
    return [_adapt(k) for k in kernels()]


def _never(graph, match, ctx):
    return "stands for the registered torch kernels"


RULE = register(Rule("lower_torch", __doc__.splitlines()[0], _match, _never, lambda g, m, c: {}, ops=(),
                     expand=expand))
