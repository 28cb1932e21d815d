"""What a validated graph costs at concrete sizes, node by node, without running it (no torch).

:func:`node_costs` gives, for every node, its parameters and their bytes, its forward FLOPs (the op's
registered rule, :mod:`nngraph.cost.rules`), the bytes it reads and writes, and the bytes of its outputs;
:func:`graph_cost` adds the graph-wide quantities:

* backward FLOPs (training): each product ``Y = X W`` needs ``dW = Xᵀ dY`` and, when ``X`` needs a gradient
  (it depends on a weight: graph inputs are data), ``dX = dY Wᵀ`` -- :func:`~.rules.default_backward`, or the
  op's registered ``backward=`` rule;
* activation memory (training) = Σ bytes of every node's outputs (what autograd may keep for backward);
* peak live tensors (inference) = the most output bytes alive at once when the forward frees a value after
  its last reader (graph inputs and outputs stay alive), as the generated forward does;
* KV cache per token = Σ over self-attention nodes of 2·G·d·bytes (keys and values of one more token);
* optimizer state = moments per parameter (Adam/AdamW 2, SGD with momentum 1, …) × parameter bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from ..expr import evaluate
from ..ir import Graph, Node
from ..registry import lookup
from ..types import DTYPE_BYTES, TensorType, is_float
from .rules import CostCtx, Shape, default_backward, visible_pairs

#: the size a symbolic dim gets when the user gives none (``--dim NAME=INT`` overrides)
DEFAULT_SIZE = 128
#: optimizer moments kept per parameter (fp32 each): the optimizer's ``type`` in ``train:``
OPTIMIZER_STATES = {"adam": 2, "adamw": 2, "lamb": 2, "adafactor": 1, "rmsprop": 1, "adagrad": 1, "sgd": 0}


@dataclass
class NodeCost:
    """One node at concrete sizes."""

    name: str
    op: str
    scope: str
    params: int
    param_dtype: str
    flops: int                    # forward, attention on visible pairs
    dense_flops: int              # forward, attention on every pair
    backward_flops: int           # backward (training), attention on visible pairs
    out_bytes: int
    io_bytes: int                 # inputs read + outputs written + parameters read + the op's ``reread=``
    shape: str
    kv_bytes_per_token: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    kernels: int = 1              # aten kernels one call launches (the op's ``kernels=``)
    products: int = 1             # matrix products its FLOPs split into (the op's ``products=``)

    @property
    def param_bytes(self) -> int:
        """params × bytes of their dtype."""
        return self.params * DTYPE_BYTES.get(self.param_dtype, 4)


def concrete(t: TensorType | None, sizes: Mapping[str, int]) -> Shape | None:
    """``t``'s shape with every symbolic dim evaluated at ``sizes`` (unknown symbols: :data:`DEFAULT_SIZE`)."""
    if t is None:
        return None
    return tuple(d if isinstance(d, int) else int(evaluate(d, lambda n: sizes.get(n, DEFAULT_SIZE))) for d in t.shape)


def _bytes(t: TensorType | None, sizes: Mapping[str, int]) -> int:
    shape = concrete(t, sizes)
    return 0 if shape is None or t is None else math.prod(shape) * DTYPE_BYTES.get(t.dtype, 4)


def has_weights(node: Node) -> bool:
    """Whether the node holds weights: its own, a shared block's (``share:``), or another node's through a
    reference parameter (a ``ref`` param names the node whose weights it reads: ``tie``, ``position_from``)."""
    refs = [k for k, p in lookup(node.op).params.items() if p.kind == "ref"]
    return bool(node.n_params) or node.shares_params_with is not None or any(node.params.get(k) for k in refs)


def grad_nodes(graph: Graph) -> set[str]:
    """The nodes whose outputs need a gradient in training: those with weights and those reading a value that
    needs one. Graph inputs are data (no gradient); integer values never carry one."""
    out: set[str] = set()
    for name, node in graph.nodes.items():
        if has_weights(node) or any(_needs(graph, r, out) for r in node.all_refs()):
            out.add(name)
    return out


def _needs(graph: Graph, ref: Any, grads: set[str]) -> bool:
    t = graph.type_of(ref)
    return ref.node in grads and t is not None and is_float(t.dtype)


def cost_ctx(graph: Graph, node: Node, sizes: Mapping[str, int], dense_attention: bool = False,
             grads: set[str] | None = None) -> CostCtx:
    """The :class:`CostCtx` of ``node`` at ``sizes`` (``grads``: :func:`grad_nodes`, for backward rules)."""
    inputs = {k: concrete(graph.type_of(r), sizes) if r is not None else None for k, r in node.inputs.items()}
    need = {k: r is not None and _needs(graph, r, grads or set()) for k, r in node.inputs.items()}
    need["*"] = any(_needs(graph, r, grads or set()) for r in node.variadic)
    return CostCtx(node, node.params, inputs, {k: concrete(t, sizes) for k, t in node.outputs.items()},
                   [concrete(graph.type_of(r), sizes) for r in node.variadic], dense_attention, need,
                   has_weights(node))


def node_flops(graph: Graph, node: Node, sizes: Mapping[str, int], dense_attention: bool = False) -> int:
    """Forward FLOPs of one node by its op's registered rule (0 for ops without contractions)."""
    return _forward(lookup(node.op), cost_ctx(graph, node, sizes, dense_attention))


def node_backward_flops(graph: Graph, node: Node, sizes: Mapping[str, int], grads: set[str],
                        dense_attention: bool = False) -> int:
    """Backward FLOPs of one node: its op's registered ``backward`` rule, else :func:`~.rules.default_backward`."""
    return _backward(lookup(node.op), cost_ctx(graph, node, sizes, dense_attention, grads))


def _forward(opdef: Any, ctx: CostCtx) -> int:
    rule = getattr(opdef, "flops", None)
    return int(rule(ctx)) if rule else 0


def _backward(opdef: Any, ctx: CostCtx) -> int:
    """Backward FLOPs from ``ctx`` (its ``grads`` filled by :func:`cost_ctx`); sets ``ctx.forward``, which
    backward rules scale."""
    if getattr(opdef, "flops", None) is None:
        return 0
    ctx.forward = _forward(opdef, ctx)
    return int((opdef.backward or default_backward)(ctx))


def _declared(value: Any, ctx: CostCtx) -> int:
    """An op's cost declaration (``kernels=``, ``products=``, ``reread=``): an int, or a rule on the node at
    concrete sizes."""
    return int(value(ctx) if callable(value) else value)


def _param_dtype(node: Node) -> str:
    floats = [t.dtype for t in node.outputs.values() if is_float(t.dtype)]
    return floats[0] if floats else "float32"


def _kv_per_token(node: Node) -> int:
    """2·G·d·bytes for a self-attention node (keys and values of one token); 0 otherwise."""
    att = node.meta.get("attention")
    if att is None or att.cross:
        return 0
    return 2 * att.kv_heads * att.head_dim * DTYPE_BYTES.get(_param_dtype(node), 4)


def node_cost(graph: Graph, node: Node, sizes: Mapping[str, int], grads: set[str] | None = None) -> NodeCost:
    """Parameters, FLOPs (visible and dense attention; backward with ``grads``, :func:`grad_nodes`, computed when
    None) and bytes of one node."""
    # one context for every rule and declaration of the op (dense attention: a copy with that one flag)
    opdef = lookup(node.op)
    ctx = cost_ctx(graph, node, sizes, grads=grad_nodes(graph) if grads is None else grads)
    flops, backward = _forward(opdef, ctx), _backward(opdef, ctx)
    dense = _forward(opdef, replace(ctx, dense_attention=True)) if "attention" in node.meta else flops
    out_bytes = sum(_bytes(t, sizes) for t in node.outputs.values())
    in_bytes = sum(_bytes(graph.type_of(r), sizes) for r in node.all_refs())
    dtype = _param_dtype(node)
    params = node.n_params or 0
    shape = ", ".join(str(list(concrete(t, sizes) or ())) for t in node.outputs.values())
    # what the op declares for the roofline: kernels launched and products (each at least 1), bytes read again
    kernels, products = (max(1, _declared(v, ctx)) for v in (opdef.kernels, opdef.products))
    io_bytes = in_bytes + out_bytes + params * DTYPE_BYTES.get(dtype, 4) + _declared(opdef.reread, ctx)
    return NodeCost(node.name, node.op, ".".join(node.scope), params, dtype, flops, dense, backward, out_bytes,
                    io_bytes, shape, _kv_per_token(node), _attention_extra(node, ctx), kernels, products)


def _attention_extra(node: Node, c: CostCtx) -> dict[str, Any]:
    """batch, T·S and the visible pairs of an attention node (what the roofline and the report show)."""
    att = node.meta.get("attention")
    if att is None:
        return {}
    b, t, s = c.x[0], c.x[1], (c.inputs.get("context") or c.x)[1]
    return {"batch": b, "pairs_dense": t * s, "pairs_visible": visible_pairs(att.mask, t, s)}


def peak_live_bytes(graph: Graph, costs: Mapping[str, NodeCost], sizes: Mapping[str, int]) -> int:
    """The most bytes of values alive at once in a forward that frees each value after its last reader.

    Graph inputs are alive throughout; a node's outputs are allocated while its inputs are still alive."""
    last: dict[str, int] = {}
    order = list(graph.nodes)
    for i, node in enumerate(graph.nodes.values()):
        for ref in node.all_refs():
            last[ref.node] = i
    _held_by_block_calls(graph, order, last)
    keep = {r.node for r in graph.outputs.values()}
    live = sum(_bytes(gi.type, sizes) for gi in graph.inputs.values())
    peak = live
    for i, name in enumerate(order):
        live += costs[name].out_bytes
        peak = max(peak, live)
        for value, at in last.items():
            if at == i and value in graph.nodes and value not in keep:
                live -= costs[value].out_bytes
    return peak


def _held_by_block_calls(graph: Graph, order: list[str], last: dict[str, int]) -> None:
    """A value read inside a block copy is alive until the copy's last node: the generated forward calls the copy
    as a module (compilers/torch/blocks.py), and the caller holds its arguments until the call returns."""
    from nngraph.block_copies import copies_of

    index = {n: i for i, n in enumerate(order)}
    for prefixes in copies_of(graph).values():
        for prefix in prefixes:
            inside = [n for n in order if n.startswith(prefix + ".")]
            if not inside:
                continue
            end = max(index[n] for n in inside)
            for n in inside:
                for ref in graph.nodes[n].all_refs():
                    if not ref.node.startswith(prefix + ".") and ref.node in last:
                        last[ref.node] = max(last[ref.node], end)


def optimizer_states(graph: Graph) -> tuple[str, int]:
    """(optimizer type, moments per parameter) from the spec's ``train.optimizer`` (adamw when none)."""
    opt = (graph.train or {}).get("optimizer") if isinstance(graph.train, dict) else None
    opt = opt if isinstance(opt, dict) else {}
    kind, momentum = opt.get("type", "adamw"), opt.get("momentum", 0) or 0
    states = OPTIMIZER_STATES.get(kind, 2)
    return kind, states + (1 if kind == "sgd" and momentum else 0)
