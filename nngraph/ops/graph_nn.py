"""Message passing on graphs: GCN, GraphSAGE, GIN, GAT, global pooling, and a generic message/aggregate/update.

Graph inputs (seed 000, "Graph Neural Networks (GNNs)"): node features ``x [N, F]`` (float),
``edge_index [2, E]`` (int64; row 0 = source u, row 1 = target v, messages flow u -> v and
are aggregated at v, as in PyTorch Geometric's default ``source_to_target`` flow), optional
edge features ``edge_attr [E, Fe]`` and an optional graph-assignment vector ``batch [N]`` (int64)
for mini-batches of graphs. The layer rule is

    h_v^(k) = update^(k)( h_v^(k-1), aggregate^(k){ (h_u^(k-1), e_uv) : u ∈ N(v) } ).

Learnable parameter layouts follow torch_geometric 2.x (``GCNConv``, ``SAGEConv``, ``GINConv``,
``GATConv``) so a back end can build those modules and get the same counts.
"""

from __future__ import annotations

from typing import Any

from ..registry import REQUIRED, InferCtx, Param, op, p_bool, p_enum, p_float, p_int
from ..cost.rules import CostCtx, dense
from ..types import Dim, TensorType, dims_equal, format_shape, is_int
from ._blockfn import block_param, declare_functions, function_params, infer_function

_GRAPH_HINT = "graph ops take x [num_nodes, F] (float) and edge_index [2, num_edges] (int64)"


def _features(ctx: InferCtx) -> tuple[Dim, int]:
    """Check x [N, F] (float, F concrete) and edge_index [2, E] (int64); returns (N, F)."""
    x = ctx.inputs["x"]
    if x.rank != 2:
        ctx.fail(f"x must be node features [num_nodes, F], got {format_shape(x.shape)}", _GRAPH_HINT)
    ctx.need_float(x, "x (node features)")
    _edges(ctx)
    f = x.shape[1]
    if not isinstance(f, int):
        ctx.fail(f"the feature dim of x must be a concrete size, got '{f}'", "declare x as [num_nodes, <int>]")
    return x.shape[0], f


def _edges(ctx: InferCtx) -> Dim:
    """Check edge_index: int64, shape [2, E]; returns E."""
    ei = ctx.inputs["edge_index"]
    if ei.dtype != "int64":
        ctx.fail(f"edge_index must be an int64 tensor of node ids, got {ei.dtype}",
                 "declare the graph input with dtype: int64 (torch_geometric needs long indices)", "edge_index")
    if ei.rank != 2 or ei.shape[0] != 2:
        ctx.fail(f"edge_index must have shape [2, num_edges], got {format_shape(ei.shape)}",
                 "row 0 holds source node ids, row 1 target node ids; transpose an [E, 2] list first", "edge_index")
    return ei.shape[1]


def _edge_attr(ctx: InferCtx, n_edges: Dim) -> int | None:
    """Check optional edge_attr [E, Fe]; returns Fe or None."""
    ea = ctx.inputs.get("edge_attr")
    if ea is None:
        return None
    if ea.rank != 2:
        ctx.fail(f"edge_attr must be [num_edges, Fe], got {format_shape(ea.shape)}", None)
    ctx.need_float(ea, "edge_attr")
    ctx.need_dim(ea.shape[0], n_edges, "edge_attr rows must match the edges in edge_index", "edge_attr",
                 "one feature row per column of edge_index")
    if not isinstance(ea.shape[1], int):
        ctx.fail(f"the feature dim of edge_attr must be a concrete size, got '{ea.shape[1]}'")
    return ea.shape[1]


# ----- FLOPs: the node-wise (and edge-wise) linear maps; scatter aggregations are additions, not counted -----
def _gcn_flops(c: CostCtx) -> int:
    """2·N·F·out (lin); the normalized neighbour sum is a scatter-add."""
    n, f = c.inputs["x"]
    return dense(n, f, c.params["out"])


def _sage_flops(c: CostCtx) -> int:
    """2·N·F·out for lin_l (+ lin_r with root_weight) (+ 2·N·F·F for the projection)."""
    (n, f), p = c.inputs["x"], c.params
    return dense(n, f, p["out"]) * (2 if p["root_weight"] else 1) + (dense(n, f, f) if p["project"] else 0)


def _gin_flops(c: CostCtx) -> int:
    """The inline MLP on every node: 2·N·(F·hidden + hidden·out); a block ``nn`` is counted as its own nodes are."""
    (n, f), p = c.inputs["x"], c.params
    if p["nn"] is not None:
        return 0
    return dense(n, f, p["hidden"]) + dense(n, p["hidden"], p["out"] or p["hidden"])


def _gin_backward(c: CostCtx) -> int:
    """2·forward for the inline MLP, less its first linear's input gradient when the aggregate (1 + ε)·x_v + Σ x_u
    needs none: x needs none and ε is a constant (no ``train_eps``)."""
    (n, f), p = c.inputs["x"], c.params
    if p["nn"] is not None:
        return 0
    return 2 * c.forward - (0 if c.needs_grad("x") or p["train_eps"] else dense(n, f, p["hidden"]))


def _gat_flops(c: CostCtx) -> int:
    """2·N·F·H·C (lin) + 2·E·Fe·H·C (lin_edge, per edge) + 2·N·F·total (res)."""
    (n, f), p = c.inputs["x"], c.params
    hc = p["heads"] * p["out"]
    total = dense(n, f, hc)
    ea = c.inputs.get("edge_attr")
    if ea is not None:
        total += dense(ea[0] + (n if p["add_self_loops"] else 0), ea[1], hc)
    if p["residual"]:
        total += dense(n, f, hc if p["concat"] else p["out"])
    return total


# ----- GCN ---------------------------------------------------------------
def _gcn_count(ctx: InferCtx) -> int:
    f, out = ctx.inputs["x"].shape[1], ctx.params["out"]
    return f * out + (out if ctx.params["bias"] else 0)


@op("gcn_conv", family="graph", inputs=("x", "edge_index", "edge_weight?"), params={
    "out": p_int("output features per node"),
    "bias": p_bool("learnable bias added after aggregation", True),
    "add_self_loops": p_bool("add A + I self loops before normalizing", True),
    "normalize": p_bool("symmetric normalization D^-1/2 Ã D^-1/2", True),
    "improved": p_bool("self loops of weight 2 (Ã = A + 2I)", False),
}, count=_gcn_count, flops=_gcn_flops, kernels=32, example={"in": ["x", "edge_index"], "out": 16}, shape_hint=_GRAPH_HINT)
def gcn_conv(ctx: InferCtx) -> TensorType:
    """Graph convolution H = D̃^{-1/2} Ã D̃^{-1/2} X Θ + b with Ã = A + I (seed 000, "Graph Neural Networks", Kipf & Welling).

    x [N, F], edge_index [2, E], optional edge_weight [E] -> [N, out].
    params (torch_geometric GCNConv): lin.weight [out, F] (Θᵀ, no bias), bias [out].
    """
    n, _ = _features(ctx)
    ew = ctx.inputs.get("edge_weight")
    if ew is not None:
        if ew.rank != 1:
            ctx.fail(f"edge_weight must be [num_edges], got {format_shape(ew.shape)}")
        ctx.need_float(ew, "edge_weight")
        ctx.need_dim(ew.shape[0], ctx.inputs["edge_index"].shape[1], "edge_weight length must match the edges")
    return TensorType((n, ctx.params["out"]), ctx.inputs["x"].dtype)


# ----- GraphSAGE ---------------------------------------------------------
def _sage_count(ctx: InferCtx) -> int:
    f, out, p = ctx.inputs["x"].shape[1], ctx.params["out"], ctx.params
    lin_l = f * out + (out if p["bias"] else 0)
    lin_r = f * out if p["root_weight"] else 0
    project = f * f + f if p["project"] else 0
    return lin_l + lin_r + project


@op("sage_conv", family="graph", inputs=("x", "edge_index"), params={
    "out": p_int("output features per node"),
    "aggr": p_enum("neighbour aggregation", ("mean", "max", "sum"), "mean"),
    "root_weight": p_bool("add the node's own transformed features (lin_r x_v)", True),
    "bias": p_bool("bias on lin_l", True),
    "normalize": p_bool("L2-normalize the output rows", False),
    "project": p_bool("first project neighbours with a biased linear + relu (lin)", False),
}, count=_sage_count, flops=_sage_flops, example={"in": ["x", "edge_index"], "out": 64, "aggr": "mean"}, shape_hint=_GRAPH_HINT)
def sage_conv(ctx: InferCtx) -> TensorType:
    """GraphSAGE: h_v' = W_l · aggr_{u∈N(v)} x_u + W_r · x_v (seed 000, "Graph Neural Networks": aggregate + update).

    x [N, F], edge_index [2, E] -> [N, out].
    params (torch_geometric SAGEConv): lin_l.weight [out, F], lin_l.bias [out] (if bias),
    lin_r.weight [out, F] (if root_weight, no bias), lin.weight [F, F] + lin.bias [F] (if project).
    """
    n, _ = _features(ctx)
    return TensorType((n, ctx.params["out"]), ctx.inputs["x"].dtype)


# ----- GIN ---------------------------------------------------------------
def _gin_count(ctx: InferCtx) -> int:
    p = ctx.params
    eps = 1 if p["train_eps"] else 0
    if p["nn"] is not None:
        return function_params(ctx, "nn") + eps
    f, hidden = ctx.inputs["x"].shape[1], p["hidden"]
    out = p["out"] or hidden
    bn = 2 * hidden if p["batch_norm"] else 0
    return f * hidden + hidden + bn + hidden * out + out + eps


@op("gin_conv", family="graph", inputs=("x", "edge_index"), params={
    "hidden": p_int("hidden width of the built-in 2-layer MLP (ignored with nn)", None),
    "out": p_int("output width of the built-in MLP (default: hidden)", None),
    "batch_norm": p_bool("BatchNorm1d between the MLP's linears", False),
    "nn": block_param("a block [N, F] -> [N, F'] used as GIN's nn instead of the built-in MLP"),
    "eps": p_float("initial ε in (1 + ε)·x_v", 0.0),
    "train_eps": p_bool("learn ε (one extra parameter)", False),
}, count=_gin_count, flops=_gin_flops, backward=_gin_backward, kernels=14, products=2, example={"in": ["x", "edge_index"], "hidden": 64}, shape_hint=_GRAPH_HINT)
def gin_conv(ctx: InferCtx) -> TensorType:
    """Graph isomorphism network: h_v' = nn((1 + ε)·x_v + Σ_{u∈N(v)} x_u) (seed 000, "Graph Neural Networks": sum aggregation + MLP update).

    x [N, F], edge_index [2, E] -> [N, out].
    params (torch_geometric GINConv): nn.0.weight [hidden, F], nn.0.bias [hidden],
    (nn.1.weight/bias [hidden] with batch_norm), nn.<last>.weight [out, hidden], nn.<last>.bias [out]
    with a ReLU in between; eps [1] when train_eps. With ``nn: BLOCK`` the block's parameters replace the MLP's.
    """
    n, f = _features(ctx)
    p = ctx.params
    if p["nn"] is None:
        if p["hidden"] is None:
            ctx.fail("gin_conv needs either 'hidden' (built-in MLP) or 'nn' (a block)", "hidden: 64")
        return TensorType((n, p["out"] or p["hidden"]), ctx.inputs["x"].dtype)
    if p["hidden"] is not None or p["out"] is not None or p["batch_norm"]:
        ctx.fail("'nn' replaces the built-in MLP: drop hidden/out/batch_norm", None, "nn")
    out = next(iter(infer_function(ctx, "nn", {_single_input(ctx, "nn"): ctx.inputs["x"]}, "GIN nn").values()))
    if out.rank != 2 or dims_equal(out.shape[0], n) is not True:
        ctx.fail(f"block used as nn must map [N, F] to [N, F'], got {format_shape(out.shape)}", None, "nn")
    return out


def _single_input(ctx: InferCtx, param: str) -> str:
    graph = ctx.params[param].graph
    names = list(graph.inputs)
    if len(names) != 1:
        ctx.fail(f"block '{ctx.params[param]}' must take exactly one input, got {len(names)} ({', '.join(names)})", None, param)
    return names[0]


declare_functions(gin_conv, nn=None)


# ----- GAT ---------------------------------------------------------------
def _gat_count(ctx: InferCtx) -> int:
    p = ctx.params
    f, heads, c = ctx.inputs["x"].shape[1], p["heads"], p["out"]
    total = heads * c if p["concat"] else c
    n = f * heads * c + 2 * heads * c  # lin.weight, att_src, att_dst
    ea = ctx.inputs.get("edge_attr")
    if ea is not None:
        n += ea.shape[1] * heads * c + heads * c  # lin_edge.weight, att_edge
    if p["residual"]:
        n += f * total
    return n + (total if p["bias"] else 0)


@op("gat_conv", family="graph", inputs=("x", "edge_index", "edge_attr?"), params={
    "out": p_int("output features per head"),
    "heads": p_int("attention heads", 1),
    "concat": p_bool("concatenate heads ([N, heads·out]); false averages them ([N, out])", True),
    "negative_slope": p_float("LeakyReLU slope in the attention logits", 0.2, min=0.0),
    "dropout": p_float("dropout on the attention coefficients", 0.0, min=0.0, max=1.0),
    "add_self_loops": p_bool("let every node attend to itself", True),
    "residual": p_bool("add a linear skip connection (res)", False),
    "bias": p_bool("learnable output bias", True),
}, count=_gat_count, flops=_gat_flops, kernels=33, example={"in": ["x", "edge_index"], "out": 8, "heads": 8}, shape_hint=_GRAPH_HINT)
def gat_conv(ctx: InferCtx) -> TensorType:
    """Graph attention: α_vu = softmax_u(LeakyReLU(a_srcᵀ W x_u + a_dstᵀ W x_v [+ a_edgeᵀ W_e e_uv])), h_v' = Σ_u α_vu W x_u.

    Attention over neighbours (seed 002, attention as content-based weighting; seed 000, "Graph Neural Networks").
    x [N, F], edge_index [2, E], optional edge_attr [E, Fe] -> [N, heads·out] (concat) or [N, out].
    params (torch_geometric GATConv): lin.weight [heads·out, F], att_src [1, heads, out], att_dst [1, heads, out],
    with edge_attr: lin_edge.weight [heads·out, Fe] and att_edge [1, heads, out]; res.weight [total, F] (residual);
    bias [total] where total = heads·out if concat else out.
    """
    n, _ = _features(ctx)
    _edge_attr(ctx, ctx.inputs["edge_index"].shape[1])
    p = ctx.params
    return TensorType((n, p["heads"] * p["out"] if p["concat"] else p["out"]), ctx.inputs["x"].dtype)


# ----- pooling -----------------------------------------------------------
def _graphs_check(value: Any) -> list[tuple[str, str]]:
    if isinstance(value, bool) or not (isinstance(value, int) and value >= 1 or isinstance(value, str) and value.isidentifier()):
        return [("", f"expected a positive integer or a symbolic dim name, got {value!r}")]
    return []


@op("global_pool", family="graph", inputs=("x", "batch?"), params={
    "mode": p_enum("how node features are combined per graph", ("sum", "mean", "max"), "mean"),
    "num_graphs": Param("custom", "number of graphs G in the batch: an integer or a symbolic dim", "num_graphs",
                        schema={"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string"}]}, check=_graphs_check),
}, example={"in": ["x", "batch"], "mode": "sum"}, shape_hint="x [num_nodes, F] and batch [num_nodes] (int64 graph ids)")
def global_pool(ctx: InferCtx) -> TensorType:
    """Graph readout: out_g = ⊕_{v : batch[v] = g} x_v with ⊕ = sum, mean or max (seed 000, "Graph Neural Networks": pooling for graph-level tasks).

    x [N, ...] and batch [N] (int64 graph id per node) -> [num_graphs, ...]; without batch all nodes are one graph -> [1, ...].
    No learnable parameters.
    """
    x = ctx.inputs["x"]
    ctx.need_min_rank(x, 2, "x")
    batch = ctx.inputs.get("batch")
    if batch is None:
        return x.with_shape((1,) + x.shape[1:])
    if not is_int(batch.dtype):
        ctx.fail(f"batch must be an int64 vector of graph ids, got {batch.dtype}", "declare it with dtype: int64")
    if batch.rank != 1:
        ctx.fail(f"batch must be [num_nodes], got {format_shape(batch.shape)}", "one graph id per node")
    ctx.need_dim(batch.shape[0], x.shape[0], "batch length must equal the number of nodes in x")
    return x.with_shape((ctx.params["num_graphs"],) + x.shape[1:])


# ----- generic message passing -------------------------------------------
@op("message_passing", family="graph", inputs=("x", "edge_index", "edge_attr?"), params={
    "message": block_param("block computing one message per edge from (h_u, h_v, e_uv) or a subset", REQUIRED),
    "aggr": p_enum("how messages into a node are combined", ("sum", "mean", "max"), "sum"),
    "update": block_param("block computing the new node state from (h, aggr) or a subset; default: the aggregate itself"),
}, count=lambda ctx: function_params(ctx, "message") + function_params(ctx, "update"),
    example={"in": ["x", "edge_index"], "message": "edge_mlp", "aggr": "sum", "update": "node_mlp"},
    shape_hint=_GRAPH_HINT)
def message_passing(ctx: InferCtx) -> TensorType:
    """Generic layer h_v' = update(h_v, aggr_{u∈N(v)} message(h_u, h_v, e_uv)) (seed 000, "Graph Neural Networks").

    The message block runs on per-edge tensors: ``h_u = x[edge_index[0]]`` and ``h_v = x[edge_index[1]]``
    ([E, F]), ``e_uv = edge_attr`` ([E, Fe]); its first output [E, M] is aggregated (sum, mean or max)
    at the target nodes into ``aggr`` [N, M]. The update block receives ``h = x`` [N, F] and ``aggr``;
    its first output is the node's new state. Both are blocks written in the spec; their inputs must be
    named from those sets. params: the blocks' own parameters, under ``message.*`` and ``update.*``.
    """
    n, _ = _features(ctx)
    x = ctx.inputs["x"]
    n_edges = _edges(ctx)
    fe = _edge_attr(ctx, n_edges)
    per_edge = TensorType((n_edges, x.shape[1]), x.dtype)
    types = {"h_u": per_edge, "h_v": per_edge}
    if fe is not None:
        types["e_uv"] = ctx.inputs["edge_attr"]
    msg = next(iter(infer_function(ctx, "message", types, "message").values()))
    if msg.rank < 2 or dims_equal(msg.shape[0], n_edges) is not True:
        ctx.fail(f"the message block must return one row per edge [{n_edges}, M], got {format_shape(msg.shape)}",
                 "keep the edge dim first: message blocks work on [num_edges, F] tensors", "message")
    aggregated = msg.with_shape((n,) + msg.shape[1:])
    if ctx.params["update"] is None:
        return aggregated
    new = next(iter(infer_function(ctx, "update", {"h": x, "aggr": aggregated}, "update").values()))
    if new.rank < 1 or dims_equal(new.shape[0], n) is not True:
        ctx.fail(f"the update block must return one row per node [{n}, ...], got {format_shape(new.shape)}", None, "update")
    return new


declare_functions(message_passing, message=("h_u", "h_v", "e_uv"), update=("h", "aggr"))
