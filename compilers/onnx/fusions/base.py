"""The fusion machinery: :class:`Fusion` (match -> check -> rewrite), the graph :class:`Index` and
:func:`apply_fusion`; the rule modules import it, the package's registry (:mod:`.`) lists the rules."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..names import FreshNames

MS = "com.microsoft"


@dataclass
class Match:
    """The anchor node, the nodes the fusion replaces (anchor included), and named captures."""

    anchor: Any
    covers: list[Any]
    captures: dict[str, Any] = field(default_factory=dict)


@dataclass
class Rewrite:
    nodes: list[Any]
    initializers: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class Fusion:
    name: str
    doc: str
    op_type: str
    domain: str
    match: Callable[["Index", Any], Match | None]
    check: Callable[["Index", Match], str | None]
    rewrite: Callable[["Index", Match], Rewrite]
    #: (opset, why) when the fusion's pattern only appears in an export of ``graph`` at that default-domain opset
    #: or newer (:mod:`nngraph.compilers.onnx.opsets` raises the export's opset to it when the fusion is asked for)
    min_opset: Callable[[Any], tuple[int, str] | None] | None = None


class Index:
    """Producers, consumers, constants and (symbolic) shapes of a model's main graph."""

    def __init__(self, model: onnx.ModelProto, shapes: dict[str, list] | None = None):
        self.model = model
        g = model.graph
        self.nodes = [_copy(n) for n in g.node]   # stable Python objects (identity marks covered nodes)
        self.producer = {o: n for n in self.nodes for o in n.output if o}
        self.consumers: dict[str, list[Any]] = {}
        for n in self.nodes:
            for i in n.input:
                if i:
                    self.consumers.setdefault(i, []).append(n)
        self.outputs = {o.name for o in g.output}
        self.inits = {t.name: t for t in g.initializer}
        self.shapes = shapes if shapes is not None else infer_shapes(model)
        self.names = FreshNames(model)   # fresh node/initializer names

    def const(self, name: str) -> np.ndarray | None:
        """The value of an initializer or ``Constant`` node output (None if ``name`` is computed)."""
        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Identity" and node.domain == "":
            return self.const(node.input[0])   # tied / shared weights are Identity of an initializer
        if node is not None and node.op_type == "Constant" and node.domain == "":
            attr = next((a for a in node.attribute if a.name == "value"), None)
            return numpy_helper.to_array(attr.t) if attr is not None else None
        return None

    def only_use(self, value: str, consumer: Any) -> bool:
        """``value`` feeds ``consumer`` alone and is not a graph output (so its producer may be removed)."""
        users = self.consumers.get(value, [])
        return value not in self.outputs and len(users) == 1 and users[0] is consumer

    def made_by(self, value: str, op_type: str, domain: str = "") -> Any:
        node = self.producer.get(value)
        return node if node is not None and node.op_type == op_type and node.domain == domain else None

    def shape(self, value: str) -> list | None:
        if value in self.shapes:
            return self.shapes[value]
        c = self.const(value)
        return list(c.shape) if c is not None else None

    def fresh(self, base: str) -> str:
        return self.names.fresh(base)


def _copy(node: Any) -> Any:
    c = onnx.NodeProto()
    c.CopyFrom(node)
    return c


def _for_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy the symbolic inference gets through (it stops at the first value it cannot shape): node outputs
    nobody reads dropped (GroupQueryAttention's unused present key/value), and the opset-23 ``Attention`` on
    3-D inputs (``q_num_heads`` set; what the onnx-attention kernel emits: its output has the query's shape,
    [B, T, heads * head_dim]) stood in for by an ``Identity`` of the query."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for n in copy.graph.node:
        if n.op_type == "Attention" and n.domain == "" and attr(n, "q_num_heads") is not None:
            stand_in = helper.make_node("Identity", [n.input[0]], [n.output[0]], name=n.name)
            n.CopyFrom(stand_in)
    used = {i for n in copy.graph.node for i in n.input} | {o.name for o in copy.graph.output}
    keep = []
    for n in copy.graph.node:
        outs = [o if o in used else "" for o in n.output]
        if not any(outs):
            continue   # nothing reads it (e.g. the mask of an Attention stood in for above)
        if n.domain == "":
            outs = list(n.output)   # standard ops keep their outputs (a Split's count must match its sizes)
        while not outs[-1]:
            outs.pop()
        del n.output[:]
        n.output.extend(outs)
        keep.append(_copy(n))
    del copy.graph.node[:]
    copy.graph.node.extend(keep)
    return copy


def infer_shapes(model: onnx.ModelProto) -> dict[str, list]:
    """{value: dims (ints, dim names, or None where unknown)} from ORT's symbolic shape inference.

    Its steps are run here rather than ``SymbolicShapeInference.infer_shapes``, which raises (and writes
    a temp file into the working directory) when some value stays unknown: the shapes it did find are
    still right, and a fusion whose values are unknown does not apply. {} if it fails outright.
    """
    try:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        sym = SymbolicShapeInference(2**31 - 1, True, False, 0)
        sym._preprocess(_for_shapes(model))
        while sym.run_:
            sym._infer_impl()
        known = dict(sym.known_vi_)
    except Exception:  # noqa: BLE001 - without shapes, fusions that need them do not apply
        return {}
    out = {}
    for name, v in known.items():
        t = v.type.tensor_type
        if t.HasField("shape"):
            out[name] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]
    return out


def same_shape(a: list | None, b: list | None) -> bool:
    """Both shapes known and provably equal (every dim the same number or the same name)."""
    return a is not None and b is not None and len(a) == len(b) and all(x is not None and x == y for x, y in zip(a, b))


def attr(node: Any, name: str, default: Any = None) -> Any:
    a = next((a for a in node.attribute if a.name == name), None)
    if a is None:
        return default
    value = helper.get_attribute_value(a)
    return value.decode() if isinstance(value, bytes) else value


def toposort(nodes: list[Any], available: set[str]) -> list[Any]:
    """Nodes in an order where every input is produced before use (stable: keeps the given order where it can)."""
    done, out, pending = set(available), [], list(nodes)
    while pending:
        rest = []
        for n in pending:
            if all((not i) or i in done for i in n.input):
                out.append(n)
                done.update(o for o in n.output if o)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise ValueError(f"fusion left a cycle or a dangling input at node '{rest[0].name}'")
        pending = rest
    return out


def apply_fusion(model: onnx.ModelProto, fusion: Fusion) -> int:
    """Apply one fusion everywhere it matches and checks out (in place); returns how many times."""
    idx = Index(model)
    claimed: set[int] = set()
    removed: set[int] = set()
    added: list[Any] = []
    inits: list[Any] = []
    count = 0
    for node in idx.nodes:
        if node.op_type != fusion.op_type or node.domain != fusion.domain or id(node) in claimed:
            continue
        m = fusion.match(idx, node)
        if m is None or any(id(c) in claimed for c in m.covers) or fusion.check(idx, m) is not None:
            continue
        rw = fusion.rewrite(idx, m)
        claimed.update(id(c) for c in m.covers)
        removed.update(id(c) for c in m.covers)
        added += rw.nodes
        inits += rw.initializers
        count += 1
    if not count:
        return 0
    keep = [n for n in idx.nodes if id(n) not in removed]
    available = {i.name for i in model.graph.input} | {t.name for t in model.graph.initializer} | \
        {t.name for t in inits}
    ordered = toposort(keep + added, available)
    del model.graph.node[:]
    model.graph.node.extend(ordered)
    model.graph.initializer.extend(inits)
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    dead = [t for t in model.graph.initializer if t.name not in used]
    for t in dead:
        model.graph.initializer.remove(t)
    if not any(o.domain == MS for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS, 1))
    return count
