"""``--set key=value`` overrides.

``key`` is a var name (``d_model=512``), or a dotted path:

* ``vars.d_model``, ``train.optimizer.lr``, ``name``, ``doc``: set in the parsed document before validation;
* ``graph.PATH.PARAM``: a parameter of the node or block use at ``PATH``, its dotted name in the expanded
  graph, where ``*`` stands for any one part: ``graph.head.out``, ``graph.enc.fc.out`` (a node of the block
  use ``enc``), ``graph.layers.*.mlp.hidden`` (every copy of a repeated block), ``graph.layers.0.mlp.hidden``
  (its first copy), ``graph.enc.width`` (a block parameter of the use ``enc``, as its ``with:``),
  ``graph.rnn.cell.inp.bias`` (node ``inp`` of the block a ``recur`` node ``rnn`` runs as its ``cell``);
* ``blocks.BLOCK.NODE.PARAM``: a parameter of node ``NODE`` in every use of block ``BLOCK``;
  ``blocks.BLOCK.PARAM``: the default of block parameter ``PARAM`` (a use's ``with:`` still wins).

Node and block overrides (:class:`NodeOverrides`) are applied while blocks expand, so they reach nodes of
imported blocks and of every copy; one that reaches nothing is an error listing the valid targets.
Values are parsed as YAML scalars/flow collections by the same safe loader, and everything then goes
through the normal validation, with errors in an overridden value reported at the ``--set``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import Diagnostic, Diagnostics, SourcePos, SpecError, choices_hint
from ..yamlsrc import Map, load_yaml_text


def parse_override(text: str) -> tuple[str, Any, SourcePos]:
    """Split ``key=value`` and parse the value safely; raises :class:`SpecError`."""
    pos = SourcePos(f"--set {text}")
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise SpecError([Diagnostic(pos, f"override '{text}' is not key=value", "e.g. --set d_model=512")])
    try:
        value = load_yaml_text(raw, f"--set {key.strip()}") if raw.strip() else ""
    except SpecError as err:  # a position inside the value text means nothing on a command line
        first = err.diagnostics[0]
        raise SpecError([Diagnostic(pos, f"value of override '{text}' is not valid: {first.message}",
                                    "quote it for the shell; values are YAML: 512, 0.1, true, [1, 2], text")]) from None
    return key.strip(), value, pos


def apply_overrides(data: dict, overrides: list[str], diag: Diagnostics) -> NodeOverrides:
    """Apply each document override in order (problems are recorded in ``diag``); return the node and block
    overrides, for the expansion to apply."""
    nodes = NodeOverrides()
    for text in overrides:
        try:
            key, value, pos = parse_override(text)
        except SpecError as err:
            diag.extend(err.diagnostics)
            continue
        path = key.split(".")
        if len(path) == 1:
            path = ["vars", key]
        if path[0] == "vars":
            _set_var(data, path[1:], value, pos, diag)
        elif path[0] in ("graph", "blocks"):
            nodes.add(key, path, value, pos, diag)
        elif path[0] in ("train", "name", "doc"):
            _set_path(data, path, value, pos, diag)
        else:
            diag.error(pos, f"cannot override '{key}'",
                       "override a var (d_model=512), vars.NAME, graph.NODE.PARAM, graph.USE.*.NODE.PARAM, "
                       "blocks.BLOCK.PARAM, blocks.BLOCK.NODE.PARAM or train.KEY...")
    return nodes


#: keys of a node or block use that say what it is and what it reads: not parameters
STRUCTURE_KEYS = ("name", "op", "block", "in", "repeat", "share", "with", "doc")


@dataclass
class NodeOverride:
    """One ``--set`` aimed at a parameter of a node, of a block use or of a block definition."""

    key: str  # as written: graph.layers.*.mlp.hidden
    block: str | None  # blocks.BLOCK...: the block; None for graph.PATH...
    path: tuple[str, ...]  # graph: the node's dotted name ('*': any one part); blocks: (NODE,), or () for a param
    param: str
    value: Any
    pos: SourcePos
    hits: int = 0

    def matches(self, fq: str, block: str | None, local: str) -> bool:
        """Whether it targets the node or block use ``fq`` (``local`` in a copy of ``block``)."""
        if self.block is not None:
            return self.path == (local,) and block == self.block
        parts = fq.split(".")
        return len(parts) == len(self.path) and all(p in ("*", q) for p, q in zip(self.path, parts))

    @property
    def target(self) -> str:
        """What it names, without the parameter: ``graph.layers.*.mlp``, ``blocks.layer``."""
        return ".".join(["graph", *self.path] if self.block is None else ["blocks", self.block, *self.path])


@dataclass
class NodeOverrides:
    """The node and block overrides of one spec, and every target the expansion offered them (for hints)."""

    items: list[NodeOverride] = field(default_factory=list)
    targets: set[str] = field(default_factory=set)

    def add(self, key: str, path: list[str], value: Any, pos: SourcePos, diag: Diagnostics) -> None:
        """Record ``graph.PATH.PARAM`` or ``blocks.BLOCK[.NODE].PARAM``; a malformed key is an error."""
        if path[0] == "graph" and (len(path) < 3 or "" in path):
            diag.error(pos, "graph overrides take the form graph.PATH.PARAM=value",
                       "e.g. graph.head.out=10, graph.enc.fc.out=10, graph.layers.*.mlp.hidden=64")
            return
        if path[0] == "blocks" and (len(path) not in (3, 4) or "" in path):
            diag.error(pos, "block overrides take the form blocks.BLOCK.PARAM=value or blocks.BLOCK.NODE.PARAM=value",
                       "e.g. blocks.decoder_layer.mlp.hidden=1024")
            return
        if path[-1] in STRUCTURE_KEYS:
            diag.error(pos, f"cannot override '{path[-1]}' of a node", "override parameters only")
            return
        block = path[1] if path[0] == "blocks" else None
        where = tuple(path[2:-1]) if block is not None else tuple(path[1:-1])
        self.items.append(NodeOverride(key, block, where, path[-1], value, pos))

    def offer(self, fq: str, block: str | None, local: str) -> list[NodeOverride]:
        """The overrides of node or block use ``fq`` (``local`` in a copy of ``block``), counted as used."""
        if not self.items:
            return []
        self.targets.add("graph." + ".".join("*" if p.isdigit() else p for p in fq.split(".")))
        if block is not None:
            self.targets.add(f"blocks.{block}.{local}")
        hits = [o for o in self.items if o.path and o.matches(fq, block, local)]
        for o in hits:
            o.hits += 1
        return hits

    def within(self, prefix: str) -> NodeOverrides:
        """The same overrides seen from a block expanded as a node's parameter (a ``recur`` cell, an MoE expert):
        its nodes are named ``NODE.PARAM.INNER`` (``graph.rnn.cell.fc.out``); ``blocks.`` overrides reach them
        as in any use."""
        return _Within(self.items, self.targets, prefix)

    def defaults(self, block: str, params: Any) -> dict[str, NodeOverride]:
        """The overridden defaults of block ``block``'s parameters (``params``: the ones it declares)."""
        if not self.items:
            return {}
        self.targets |= {f"blocks.{block}.{p}" for p in params}
        hits = {o.param: o for o in self.items if o.block == block and not o.path}
        for o in hits.values():
            o.hits += 1
        return hits

    def report_unused(self, diag: Diagnostics) -> None:
        """An error for each override that reached nothing, listing the targets there are."""
        for o in self.items:
            if not o.hits:
                diag.error(o.pos, f"'{o.key}' overrides nothing: no node, block use or block named '{o.target}'",
                           choices_hint(o.target, sorted(self.targets), "targets"))


def _set_var(data: dict, path: list[str], value: Any, pos: SourcePos, diag: Diagnostics) -> None:
    vars_ = data.get("vars")
    if len(path) != 1 or not isinstance(vars_, dict) or path[0] not in vars_:
        known = list(vars_) if isinstance(vars_, dict) else []
        diag.error(pos, f"unknown var '{'.'.join(path)}'", choices_hint(".".join(path), known, "vars of this spec"))
        return
    vars_[path[0]] = value
    if isinstance(vars_, Map):
        vars_.value_pos[path[0]] = pos


def _set_path(data: dict, path: list[str], value: Any, pos: SourcePos, diag: Diagnostics) -> None:
    target = data
    for part in path[:-1]:
        nxt = target.get(part)
        if nxt is None:
            nxt = Map(pos=pos)
            target[part] = nxt
        if not isinstance(nxt, dict):
            diag.error(pos, f"cannot set '{'.'.join(path)}': '{part}' is not a mapping")
            return
        target = nxt
    target[path[-1]] = value


@dataclass
class _Within(NodeOverrides):
    """:meth:`NodeOverrides.within`: offers ``prefix + fq`` (hits and targets are the outer spec's)."""

    prefix: str = ""

    def offer(self, fq: str, block: str | None, local: str) -> list[NodeOverride]:
        return super().offer(self.prefix + fq, block, local)

    def within(self, prefix: str) -> NodeOverrides:
        return _Within(self.items, self.targets, self.prefix + prefix)
