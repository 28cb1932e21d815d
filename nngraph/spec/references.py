"""References between nodes: as written (``attn``, ``lstm.h``, relative to a namespace), through aliases, to IR refs.

Block inputs and block uses are *aliases* (:class:`Alias`): names that stand for other values.
:class:`References` (mixed into the :class:`~nngraph.spec.expand.Expander`) follows them once every
node list is expanded, so references may point forward in any order; :func:`resolve_all` turns
every pending node input into a :class:`~nngraph.ir.Ref` and reports the dangling ones at the
position where they are written, with the names in scope as choices.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import SourcePos, choices_hint
from ..ir import Node, Ref
from ..registry import OpDef, lookup

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class TextRef:
    """A reference as written: text relative to a namespace."""

    namespace: str
    text: str
    pos: SourcePos


@dataclass
class QualRef:
    """A reference already qualified: a full name and an optional output."""

    name: str
    output: str | None = None


Target = TextRef | QualRef | None


@dataclass
class Alias:
    """A name that stands for other values: a block input, or a block use's outputs."""

    outputs: dict[str | None, Target]
    pos: SourcePos


class References:
    """Reference resolution over ``self.nodes``, ``self.aliases`` and ``self.graph_inputs`` (see the module doc)."""

    nodes: dict[str, Node]
    aliases: dict[str, Alias]
    graph_inputs: set[str]
    broken: set[str]
    ops: Any
    _too_big: bool
    _lenient: set[str]

    def resolve_target(self, target: Target, depth: int = 0) -> Ref | None:
        """Resolve a reference to a concrete node/input output; errors are recorded."""
        if target is None:
            return None
        if depth > 256:
            raise RefError("reference chain too long (cyclic block wiring?)")
        if isinstance(target, QualRef):
            return self._resolve_name(target.name, target.output, depth)
        head, _, rest = target.text.partition(".")
        if not NAME_RE.match(head) or (rest and not all(NAME_RE.match(p) for p in rest.split("."))):
            raise RefError(f"invalid reference '{target.text}'", "write 'node' or 'node.output'")
        try:
            return self._resolve_name(target.namespace + head, rest or None, depth, target)
        except RefError as err:
            if err.pos is None and depth > 0 and not err.silent:
                err.pos = target.pos  # e.g. a block's output list: report it there, not at every consumer
            raise

    def _resolve_name(self, fq: str, output: str | None, depth: int, written: TextRef | None = None) -> Ref | None:
        if fq in self.nodes:
            node = self.nodes[fq]
            names = lookup_op(node.op).output_names(node.params)
            if output is not None and output not in names:
                raise RefError(f"node '{fq}' ({node.op}) has no output '{output}'", choices_hint(output, names, "outputs"))
            return Ref(fq, output)
        if fq in self.aliases:
            alias = self.aliases[fq]
            if output is not None and output not in alias.outputs:
                named = [k for k in alias.outputs if k is not None]
                raise RefError(f"'{fq}' has no output '{output}'", choices_hint(output, named, "outputs"))
            target = alias.outputs.get(output)
            if target is None:
                return None
            return self.resolve_target(target, depth + 1)
        if "." not in fq and fq in self.graph_inputs:
            if output is not None:
                raise RefError(f"graph input '{fq}' has no outputs; refer to it as '{fq}'")
            return Ref(fq)
        if fq in self.broken or self._too_big or any(fq.startswith(p) for p in self._lenient):
            raise RefError(f"reference to '{fq}', whose definition failed", silent=True)
        local = fq.rsplit(".", 1)[-1]
        ns = fq[: -len(local)]
        visible = [n[len(ns):] for n in list(self.nodes) + list(self.aliases)
                   if n.startswith(ns) and "." not in n[len(ns):]]
        if not ns:
            visible += list(self.graph_inputs)
        raise RefError(f"unknown reference '{written.text if written else fq}'",
                        choices_hint(local, visible, "names in scope"))


def lookup_op(name: str) -> OpDef:
    """The op of a node the expander made: a spec's op or an internal one (``skipped_block``)."""
    opdef = lookup(name)
    assert opdef is not None, name
    return opdef


class RefError(Exception):
    def __init__(self, message: str, hint: str | None = None, silent: bool = False):
        super().__init__(message)
        self.message, self.hint = message, hint
        self.silent = silent  # a consequence of an error already reported: do not report it again
        self.pos: SourcePos | None = None  # set when the failing reference is not the one the caller wrote


def resolve_all(exp: References) -> None:
    """Resolve every pending node input into a :class:`Ref`; record dangling references."""
    for node, inputs, variadic, namespace in exp.pending:
        exp.diag.context = node.meta.get("uses", ())  # a dangling reference in a block names the use chain
        for key, target in inputs.items():
            node.inputs[key] = _resolve_or_report(exp, node, target)
        node.variadic = [r for r in (_resolve_or_report(exp, node, t) for t in variadic) if r is not None]
        opdef = lookup_op(node.op)
        for key, param in opdef.params.items():
            value = node.params.get(key)
            if param.kind == "ref" and isinstance(value, str):
                ref = _resolve_param_ref(exp, node, namespace, value, node.param_pos.get(key, node.pos))
                node.params[key] = ref.node if ref is not None else None
        for name in opdef.input_names:
            if name != opdef.variadic:
                node.inputs.setdefault(name, None)
    exp.diag.context = ()


def _resolve_param_ref(exp: References, node: Node, namespace: str, value: str, pos: SourcePos) -> Ref | None:
    """A ``ref`` param: relative to the node's namespace, or ``/full.path`` from the graph root (a node in
    another block copy, e.g. ``/encoder.0.self_attn``: T5's one position table per stack)."""
    if not value.startswith("/"):
        return _resolve_or_report(exp, node, TextRef(namespace, value, pos))
    if value[1:] not in exp.nodes:
        exp.diag.error(pos, f"unknown node '{value[1:]}' (in node '{node.name}')",
                       "a '/' reference names a node by its full path from the graph root, e.g. /encoder.0.self_attn")
        return None
    return Ref(value[1:])


def _resolve_or_report(exp: References, node: Node, target: Target) -> Ref | None:
    try:
        return exp.resolve_target(target)
    except RefError as err:
        if err.silent:
            pass
        elif err.pos is not None:
            exp.diag.error(err.pos, err.message, err.hint)
        else:
            pos = target.pos if isinstance(target, TextRef) else node.pos
            exp.diag.error(pos, f"{err.message} (in node '{node.name}')", err.hint)
        return None
