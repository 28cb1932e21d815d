"""The closed-IR check behind :meth:`nngraph.ir.Graph.lint` (torch.fx's ``Graph.lint`` for nngraph graphs).

A graph is well formed when

* every node's op is known to the registry (user ops and the back-end ops passes create);
* every reference resolves: inputs and variadic inputs name a graph input or an *earlier* node (the node
  dict is the topological order) and an output that node has; ``ref`` params name a node; graph outputs resolve;
* every node is typed: its outputs are the op's output names, each a shape of non-negative ints or
  symbolic dims with a known dtype;
* its params are the op's params, the required ones present, each value valid for its kind
  (:func:`nngraph.params.check_value`, the same check the spec loader ran).

Passes call it after every edit (compilers/passes/rewrite.py), so a pass that produces a graph the back
ends cannot trust fails at the node it broke, not later inside a torch module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

from .errors import Diagnostic, SourcePos, SpecError
from .params import check_value
from .registry import OpDef, lookup
from .types import DTYPES, TensorType

if TYPE_CHECKING:
    from .ir import Graph, Node, Ref


class LintError(SpecError):
    """A graph that breaks an IR invariant; its diagnostics name the node and point at its spec position."""


def _ref_problem(graph: "Graph", ref: "Ref", defined: set[str]) -> str | None:
    """Why ``ref`` does not resolve at this point of the order (None: it does)."""
    if ref.node in graph.inputs:
        return None if ref.output is None else f"reads '{ref}', but graph input '{ref.node}' has no outputs"
    if ref.node not in graph.nodes:
        return f"reads '{ref}', which is neither a graph input nor a node"
    if ref.node not in defined:
        return f"reads '{ref}' before node '{ref.node}' is defined (the node order must be topological)"
    outs = graph.nodes[ref.node].outputs
    if ref.output is not None and outs and ref.output not in outs:
        return f"reads '{ref}', but node '{ref.node}' has outputs {', '.join(outs)}"
    return None


def _type_problems(node: "Node", opdef: OpDef) -> Iterator[str]:
    if not node.outputs:
        yield "has no inferred output type"
        return
    want = opdef.output_names(node.params)
    if tuple(node.outputs) != tuple(want):
        yield f"has outputs {', '.join(node.outputs)}, but op '{node.op}' makes {', '.join(want)}"
    for name, t in node.outputs.items():
        if not isinstance(t, TensorType) or t.dtype not in DTYPES:
            yield f"output '{name}' has no valid type: {t!r}"
        elif not all((isinstance(d, int) and not isinstance(d, bool) and d >= 0) or (isinstance(d, str) and d)
                     for d in t.shape):
            yield f"output '{name}' has an invalid shape {t.shape!r}"


def _param_problems(graph: "Graph", node: "Node", opdef: OpDef) -> Iterator[str]:
    for key, value in node.params.items():
        p = opdef.params.get(key)
        if p is None:
            yield f"has parameter '{key}', which op '{node.op}' does not take"
            continue
        if p.kind == "ref" and value is not None and value not in graph.nodes:
            yield f"parameter '{key}' names '{value}', which is not a node"
        for sub, problem in check_value(p, value)[1]:
            yield f"parameter '{key}{'.' + sub if sub else ''}': {problem}"
    for key, p in opdef.params.items():
        if p.required and key not in node.params:
            yield f"is missing required parameter '{key}'"


def node_problems(graph: "Graph", node: "Node", defined: set[str]) -> list[str]:
    """Every invariant ``node`` breaks, given the nodes ``defined`` before it."""
    opdef = lookup(node.op)
    refs = [p for p in (_ref_problem(graph, r, defined) for r in node.all_refs()) if p]
    if opdef is None:
        return [f"has op '{node.op}', which no registry declares (ops that passes create are "
                "declared internal, see nngraph/ops/backend_ops.py)"] + refs
    return refs + list(_type_problems(node, opdef)) + list(_param_problems(graph, node, opdef))


def lint_graph(graph: "Graph") -> list[Diagnostic]:
    """Every IR invariant the graph breaks, one diagnostic per problem at the node's spec position."""
    out: list[Diagnostic] = []
    defined: set[str] = set()
    for name, node in graph.nodes.items():
        if name != node.name:
            out.append(Diagnostic(node.pos, f"IR lint: node '{node.name}' is stored under the name '{name}'"))
        for problem in node_problems(graph, node, defined):
            out.append(Diagnostic(node.pos, f"IR lint: node '{node.name}' ({node.op}) {problem}"))
        defined.add(name)
    for out_name, ref in graph.outputs.items():
        problem = _ref_problem(graph, ref, defined)
        if problem:
            pos = graph.output_pos.get(out_name) or SourcePos(graph.file)
            out.append(Diagnostic(pos, f"IR lint: graph output '{out_name}' {problem}"))
    return out


def lint(graph: "Graph") -> None:
    """Raise :class:`LintError` (every problem, located) unless the graph is well formed."""
    problems = lint_graph(graph)
    if problems:
        raise LintError(problems)


__all__ = ["LintError", "lint", "lint_graph", "node_problems"]
