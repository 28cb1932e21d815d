"""The rule engine both passes use (modelled on onnxscript's rewriter): pattern, check, rewrite.

A :class:`Rule` has

``match(graph, node) -> Match | None``
    the *pattern*: does the subgraph ending at ``node`` have the rule's shape? (cheap, structural)
``check(graph, match, ctx) -> str | None``
    the *condition*: None if the rule applies, else the reason it does not (shown by ``--explain``
    and kept in :attr:`PassResult.skipped`);
``rewrite(graph, match, ctx) -> Edit``
    the *replacement*: new nodes by name (``None`` removes a node). It must not mutate the graph.

:func:`apply_rules` runs the rules over every node, **collects** the edits (a node claimed by
an earlier edit is not matched again: the first rule in order wins), then applies them **once**
to a copy of the graph, keeping the topological order (a replacement takes its node's place),
and lints the result (:meth:`nngraph.ir.Graph.lint`: every op declared, refs resolve, nodes typed).
It returns a :class:`PassResult`: the new graph and every change made — a pass that changes
nothing says so with an empty list.

Lowering rules (kernel candidates) additionally estimate their cost; see
:mod:`nngraph.compilers.passes.lowering`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable

from nngraph.ir import Graph, Node


@dataclass
class Match:
    """What a pattern found: the anchor node, the nodes it covers, and named captures."""

    node: str
    covers: tuple[str, ...]
    captures: dict[str, Any] = field(default_factory=dict)


@dataclass
class Edit:
    """The change a rule wants: replacement nodes by name (None = remove) and a one-line description."""

    replace: dict[str, Node | None]
    detail: str


@dataclass(frozen=True)
class Change:
    """One applied change: which pass and rule, the node it produced, what it did, the nodes it removed."""

    pass_name: str
    rule: str
    node: str
    detail: str
    removed: tuple[str, ...] = ()

    def __str__(self) -> str:
        gone = f" (removed {', '.join(self.removed)})" if self.removed else ""
        return f"{self.pass_name}: {self.rule} at {self.node}: {self.detail}{gone}"


@dataclass
class PassResult:
    """A pass's output graph, the changes it made, and the matches it declined (node, rule, reason)."""

    graph: Graph
    changes: list[Change] = field(default_factory=list)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def summary(self) -> str:
        """One line per change (or 'no changes')."""
        return "\n".join(map(str, self.changes)) or "no changes"


@dataclass
class Rule:
    """A rewrite rule; see the module doc."""

    name: str
    doc: str
    match: Callable[[Graph, Node], Match | None]
    check: Callable[[Graph, Match, Any], str | None]
    rewrite: Callable[[Graph, Match, Any], Edit]
    #: lowering rules: estimated milliseconds of one call at a key length (None: not a kernel candidate)
    cost: Callable[..., float] | None = None
    #: lowering rules: estimated bytes of the [.., T, S]-sized tensors one call materializes (batch 1):
    #: ``memory(facts, kv_len, config, mode)``
    memory: Callable[..., float] | None = None
    #: lowering rules: the kernel name the rule lowers to (``reference``, ``sdpa``, ``flex``, ...)
    kernel: str | None = None
    ops: tuple[str, ...] = ()
    #: a rule standing for a family provided elsewhere (ONNX kernels): its member rules, or [] if none
    expand: Callable[[], list["Rule"]] | None = None


def apply_edits(graph: Graph, edits: list[Edit]) -> Graph:
    """A copy of ``graph`` with every edit applied at once (replacements keep their node's position)."""
    out = copy.copy(graph)
    replace: dict[str, Node | None] = {}
    for e in edits:
        replace.update(e.replace)
    nodes: dict[str, Node] = {}
    for name, node in graph.nodes.items():
        if name in replace:
            new = replace[name]
            if new is not None:
                nodes[new.name] = new
        else:
            nodes[name] = node
    out.nodes = nodes
    out.lint()  # the one place every pass's edits land: a broken IR fails here, at the node, not in a back end
    return out


def apply_rules(graph: Graph, rules: list[Rule], ctx: Any, pass_name: str) -> PassResult:
    """Match every rule at every node, collect the edits, apply them once; see the module doc."""
    claimed: set[str] = set()
    edits: list[Edit] = []
    changes: list[Change] = []
    skipped: list[tuple[str, str, str]] = []
    for node in list(graph.nodes.values()):
        for rule in rules:
            if rule.ops and node.op not in rule.ops:
                continue
            m = rule.match(graph, node)
            if m is None:
                continue
            overlap = claimed & set(m.covers)
            if overlap:
                skipped.append((m.node, rule.name, f"overlaps an earlier match at {', '.join(sorted(overlap))}"))
                continue
            reason = rule.check(graph, m, ctx)
            if reason is not None:
                skipped.append((m.node, rule.name, reason))
                continue
            edit = rule.rewrite(graph, m, ctx)
            claimed.update(m.covers)
            edits.append(edit)
            removed = tuple(n for n, v in edit.replace.items() if v is None)
            changes.append(Change(pass_name, rule.name, m.node, edit.detail, removed))
            break
    return PassResult(apply_edits(graph, edits) if edits else graph, changes, skipped)


__all__ = ["Change", "Edit", "Match", "PassResult", "Rule", "apply_edits", "apply_rules"]
