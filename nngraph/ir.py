"""The graph IR: a flat, topologically ordered list of op nodes with dotted names.

Blocks are expanded before the IR is built, so a node of a repeated block is
named ``layers.3.attn`` and remembers its ``scope`` (``("layers", "3")``) for
drawing clusters and for building ``nn.ModuleList``s in the back ends. Every
node keeps the source position it came from, so any later stage (shape
inference, the torch back end, ONNX export) can point back at the spec.

The IR is plain Python; :meth:`Graph.to_networkx` gives a ``networkx.DiGraph``
view for analysis and drawing (networkx is imported only there: it costs
~0.3 s to import, more than half of the ``validate`` budget).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

from .errors import SourcePos
from .types import TensorType


@dataclass(frozen=True)
class Ref:
    """A reference to one output of a node or graph input: ``name`` or ``name.output``."""

    node: str
    output: str | None = None

    def __str__(self) -> str:
        return self.node if self.output is None else f"{self.node}.{self.output}"


@dataclass
class GraphInput:
    """A named graph input with a (possibly symbolic) shape and dtype."""

    name: str
    type: TensorType
    pos: SourcePos
    optional: bool = False


@dataclass
class Node:
    """One primitive applied to its inputs."""

    name: str
    op: str
    inputs: dict[str, Ref | None]
    params: dict[str, Any]
    pos: SourcePos
    param_pos: dict[str, SourcePos] = field(default_factory=dict)
    input_pos: dict[str, SourcePos] = field(default_factory=dict)
    variadic: list[Ref] = field(default_factory=list)
    scope: tuple[str, ...] = ()
    block: str | None = None
    shares_params_with: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, TensorType] = field(default_factory=dict)
    n_params: int | None = None

    def all_refs(self) -> Iterator[Ref]:
        """Every value this node reads (inputs, variadic inputs)."""
        yield from (r for r in self.inputs.values() if r is not None)
        yield from self.variadic

    @property
    def out(self) -> TensorType | None:
        """The node's first (default) output type."""
        return next(iter(self.outputs.values()), None)


@dataclass
class BlockUse:
    """Where a block was instantiated: ``scope`` prefix, block name, copies."""

    name: str
    block: str
    repeat: int
    pos: SourcePos
    shared: bool = False
    shares: str | None = None  # ``share: NAME``: the use whose weights this one reuses


@dataclass
class Graph:
    """A validated spec: inputs, nodes in topological order, outputs."""

    name: str
    file: str
    inputs: dict[str, GraphInput]
    nodes: dict[str, Node]
    outputs: dict[str, Ref]
    output_pos: dict[str, SourcePos] = field(default_factory=dict)
    vars: dict[str, Any] = field(default_factory=dict)
    block_uses: list[BlockUse] = field(default_factory=list)
    train: Any = None
    dim_facts: Any = None  # nngraph.symdim.Facts declared under the spec's 'dims:' (None: sizes >= 1 only)
    doc: Any = None
    #: several named networks in one spec (nngraph/spec/networks.py): name -> that network's own graph; this
    #: graph is then their disjoint union (nodes ``<network>.<node>``, inputs ``<network>__<input>``)
    networks: dict[str, "Graph"] = field(default_factory=dict)

    def type_of(self, ref: Ref) -> TensorType | None:
        """The inferred type of a referenced value."""
        if ref.node in self.inputs:
            return self.inputs[ref.node].type
        node = self.nodes.get(ref.node)
        if node is None:
            return None
        return node.outputs.get(ref.output) if ref.output else node.out

    def consumers(self) -> dict[str, list[str]]:
        """For each value name, the nodes that read it."""
        out: dict[str, list[str]] = {}
        for node in self.nodes.values():
            for ref in node.all_refs():
                out.setdefault(ref.node, []).append(node.name)
        return out

    @property
    def total_params(self) -> int:
        """Sum of parameters over all nodes (shared copies counted once)."""
        return sum(n.n_params or 0 for n in self.nodes.values())

    def fingerprint(self) -> str:
        """A stable hash of the architecture (inputs, nodes with ops and params, wiring, outputs).

        Formatting, comments and var names do not change it; any change to what
        the model computes or which parameters it has does.
        """
        import hashlib
        import json

        data = {
            "inputs": {k: [list(map(str, v.type.shape)), v.type.dtype, v.optional] for k, v in self.inputs.items()},
            "nodes": [[n.name, n.op, n.params, {k: str(r) if r else None for k, r in n.inputs.items()},
                       [str(r) for r in n.variadic], n.shares_params_with, n.meta.get("init")]
                      for n in self.nodes.values()],
            "outputs": {k: str(r) for k, r in self.outputs.items()},
        }
        text = json.dumps(data, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def lint(self) -> None:
        """Check the closed-IR invariants (every op known, refs resolve in topological order, every node
        typed, params valid); raises :class:`nngraph.lint.LintError` naming each broken node at its position."""
        from .lint import lint

        lint(self)

    def to_networkx(self) -> Any:
        """A ``networkx.DiGraph`` of inputs and nodes, edges labelled with shapes."""
        import networkx as nx

        g = nx.DiGraph(name=self.name)
        for name, gi in self.inputs.items():
            g.add_node(name, kind="input", type=gi.type, scope=())
        for node in self.nodes.values():
            g.add_node(node.name, kind="op", op=node.op, scope=node.scope, n_params=node.n_params)
            for ref in node.all_refs():
                g.add_edge(ref.node, node.name, type=self.type_of(ref), output=ref.output)
        for out_name, ref in self.outputs.items():
            g.add_node(f"output:{out_name}", kind="output", scope=())
            g.add_edge(ref.node, f"output:{out_name}", type=self.type_of(ref), output=ref.output)
        return g
