"""Torch implementations of message passing on graphs (nngraph/ops/graph_nn.py).

Seed 000, "Graph Neural Networks (GNNs)": h_v' = update(h_v, aggregate{(h_u, e_uv) : u ∈ N(v)}).
``edge_index [2, E]`` holds (source u, target v) columns; messages flow u -> v and are
aggregated at v (torch_geometric's ``source_to_target``). Everything is vectorized over edges:
gathers ``x[edge_index[0]]`` and scatters with ``index_add_`` / ``scatter_reduce`` -- no Python
loop over nodes or edges. Before a layer reads ``edge_index`` it checks that every id is a node
of ``x`` and raises ``ValueError`` naming the first bad id and its column (the model adds the
spec node to the error).

* ``gcn_conv`` -- :class:`GCNConv`: H = D̃^-1/2 Ã D̃^-1/2 X Θ + b, Ã = A + I (2I with ``improved``),
  D̃ the in-degrees of Ã (weighted by ``edge_weight``). As torch_geometric's ``gcn_norm``, self
  loops are added only to nodes without one (an existing loop keeps its weight). State
  ``lin.weight [out, F]``, ``bias [out]``; init Glorot, bias 0 (torch_geometric's).
* ``sage_conv`` -- :class:`SAGEConv`: h_v' = W_l·aggr_u x_u + b + W_r·x_v (GraphSAGE); ``project``
  first maps neighbours with relu(lin(x)); ``normalize`` L2-normalizes rows. State ``lin_l.*``,
  ``lin_r.weight``, ``lin.*``; torch.nn's default Linear init (as torch_geometric).
* ``gin_conv`` -- :class:`GINConv`: h_v' = nn((1 + ε)·x_v + Σ_u x_u); ``nn`` is the built-in
  ``nn.Sequential`` (``nn.0`` linear, ``nn.1`` BatchNorm1d with batch_norm, ReLU, last linear) or
  a compiled block; ε is a parameter ``eps [1]`` with ``train_eps``, else a buffer (as torch_geometric).
* ``gat_conv`` -- :class:`GATConv`: α_vu = softmax over v's incoming edges of
  LeakyReLU(a_srcᵀW x_u + a_dstᵀW x_v [+ a_edgeᵀW_e e_uv]) per head, h_v' = Σ_u α_vu W x_u
  (heads concatenated or averaged) [+ res(x)] + b. The softmax is a segment softmax: scatter-max
  for stability, exp, scatter-sum. Self loops replace existing ones (their edge features the mean
  of the node's incoming ones). State ``lin.weight``, ``att_src``, ``att_dst`` [1, heads, out],
  ``lin_edge.weight``, ``att_edge``, ``res.weight``, ``bias``; init Glorot, bias 0.
* ``global_pool`` -- :func:`global_pool`: per-graph sum / mean / max of node rows by ``batch``.
* ``message_passing`` -- :class:`MessagePassing`: the message block runs once on all edges
  (its inputs ``h_u = x[src]``, ``h_v = x[dst]``, ``e_uv = edge_attr``), the messages are
  aggregated (sum / mean / max) at the targets, and the update block gets ``h = x`` and ``aggr``.
  The blocks are compiled sub-graphs (:mod:`._subgraph`), state ``message.*`` and ``update.*``.

Nodes that receive no message aggregate to 0 for every reduction (torch_geometric's convention).
The state-dict names are torch_geometric 2.x's, so its conv layers' weights load unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..trace_hooks import replaceable
from ..registry import Emit, NodeCtx, torch_op
from ._subgraph import call_function, function_module, function_spec


# ----- scatter helpers -----------------------------------------------------------
def check_edge_index(edge_index: torch.Tensor, num_nodes: int) -> None:
    """Raise ValueError naming the first id in ``edge_index`` that is not a node id in 0..num_nodes-1."""
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"edge_index must have shape [2, num_edges], got {list(edge_index.shape)}")
    if edge_index.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"edge_index must hold integer node ids, got {edge_index.dtype}")
    if edge_index.numel() == 0:
        return
    lo, hi = torch.aminmax(edge_index)
    if lo.item() >= 0 and hi.item() < num_nodes:
        return
    bad = ((edge_index < 0) | (edge_index >= num_nodes)).nonzero()[0].tolist()
    row, col = bad
    value = int(edge_index[row, col])
    which = "source" if row == 0 else "target"
    raise ValueError(f"edge_index[{row}, {col}] = {value} is not a node: the {which} node of edge {col} must be in "
                     f"0..{num_nodes - 1} (x has {num_nodes} nodes)")


def _expand(index: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return index.view(-1, *([1] * (like.dim() - 1))).expand_as(like)


def scatter(src: torch.Tensor, index: torch.Tensor, num: int, reduce: str = "sum") -> torch.Tensor:
    """Rows of ``src`` [E, ...] combined by ``index`` [E] into [num, ...]; empty groups are 0."""
    out = src.new_zeros((num,) + tuple(src.shape[1:]))
    if reduce == "sum":
        return out.index_add_(0, index, src)
    if reduce == "mean":
        total = out.index_add_(0, index, src)
        count = torch.bincount(index, minlength=num).clamp(min=1).to(src.dtype)
        return total / count.view(-1, *([1] * (src.dim() - 1)))
    if reduce == "max":
        return out.scatter_reduce(0, _expand(index, src), src, "amax", include_self=False)
    raise ValueError(f"unknown reduction {reduce!r}")


def segment_softmax(scores: torch.Tensor, index: torch.Tensor, num: int) -> torch.Tensor:
    """Softmax of ``scores`` [E, ...] over the entries sharing an ``index`` (each node's incoming edges)."""
    mx = scores.detach().new_full((num,) + tuple(scores.shape[1:]), float("-inf"))
    mx = mx.scatter_reduce(0, _expand(index, scores), scores.detach(), "amax", include_self=True)
    ex = (scores - mx[index]).exp()
    den = scores.new_zeros((num,) + tuple(scores.shape[1:])).index_add_(0, index, ex)
    return ex / (den[index] + 1e-16)


def _glorot(*tensors: torch.Tensor) -> None:
    with torch.no_grad():
        for t in tensors:
            fan_in, fan_out = t.shape[-1], t.shape[-2]  # torch_geometric's glorot uses the last two dims
            bound = (6.0 / (fan_in + fan_out)) ** 0.5
            t.uniform_(-bound, bound)


# ----- GCN -----------------------------------------------------------------------
def gcn_norm(edge_index: torch.Tensor, edge_weight: torch.Tensor | None, num_nodes: int, improved: bool = False,
             add_self_loops: bool = True, normalize: bool = True, dtype: torch.dtype = torch.float32,
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """(edge_index, weights) of D̃^-1/2 Ã D̃^-1/2 (torch_geometric's gcn_norm with add_remaining_self_loops)."""
    if edge_weight is None:
        edge_weight = torch.ones(edge_index.shape[1], dtype=dtype, device=edge_index.device)
    if add_self_loops:
        fill = 2.0 if improved else 1.0
        is_loop = edge_index[0] == edge_index[1]
        loop_w = torch.full((num_nodes,), fill, dtype=edge_weight.dtype, device=edge_weight.device)
        loop_w = loop_w.index_put((edge_index[0, is_loop],), edge_weight[is_loop])  # keep existing loops' weights
        nodes = torch.arange(num_nodes, device=edge_index.device)
        edge_index = torch.cat([edge_index[:, ~is_loop], torch.stack([nodes, nodes])], dim=1)
        edge_weight = torch.cat([edge_weight[~is_loop], loop_w])
    if not normalize:
        return edge_index, edge_weight
    deg = edge_weight.new_zeros(num_nodes).index_add_(0, edge_index[1], edge_weight)
    dis = deg.pow(-0.5).masked_fill(deg == 0, 0.0)
    return edge_index, dis[edge_index[0]] * edge_weight * dis[edge_index[1]]


class GCNConv(nn.Module):
    """Kipf & Welling graph convolution; ``forward(x, edge_index, edge_weight=None)``."""

    def __init__(self, in_features: int, out: int, bias: bool = True, add_self_loops: bool = True,
                 normalize: bool = True, improved: bool = False):
        super().__init__()
        self.lin = nn.Linear(in_features, out, bias=False)
        self.bias = nn.Parameter(torch.zeros(out)) if bias else None
        self.add_self_loops, self.normalize, self.improved = add_self_loops, normalize, improved

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_weight: torch.Tensor | None = None) -> torch.Tensor:
        n = x.shape[0]
        check_edge_index(edge_index, n)
        ei, w = gcn_norm(edge_index, edge_weight, n, self.improved, self.add_self_loops, self.normalize, x.dtype)
        h = self.lin(x)
        out = scatter(h[ei[0]] * w.unsqueeze(-1), ei[1], n, "sum")
        return out if self.bias is None else out + self.bias


# ----- GraphSAGE -----------------------------------------------------------------
class SAGEConv(nn.Module):
    """GraphSAGE; ``forward(x, edge_index)``."""

    def __init__(self, in_features: int, out: int, aggr: str = "mean", root_weight: bool = True, bias: bool = True,
                 normalize: bool = False, project: bool = False):
        super().__init__()
        self.aggr, self.normalize = aggr, normalize
        self.lin = nn.Linear(in_features, in_features) if project else None
        self.lin_l = nn.Linear(in_features, out, bias=bias)
        self.lin_r = nn.Linear(in_features, out, bias=False) if root_weight else None

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        check_edge_index(edge_index, n)
        src = torch.relu(self.lin(x)) if self.lin is not None else x
        out = self.lin_l(scatter(src[edge_index[0]], edge_index[1], n, self.aggr))
        if self.lin_r is not None:
            out = out + self.lin_r(x)
        return F.normalize(out, p=2.0, dim=-1) if self.normalize else out


# ----- GIN -----------------------------------------------------------------------
class GINConv(nn.Module):
    """Graph isomorphism network layer; ``forward(x, edge_index)``."""

    def __init__(self, mlp: nn.Module, eps: float = 0.0, train_eps: bool = False, inputs: list[str] | None = None):
        super().__init__()
        self.nn = mlp
        self.nn_inputs = inputs
        if train_eps:
            self.eps = nn.Parameter(torch.full((1,), float(eps)))
        else:
            self.register_buffer("eps", torch.full((1,), float(eps)))

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        check_edge_index(edge_index, n)
        h = scatter(x[edge_index[0]], edge_index[1], n, "sum") + (1 + self.eps) * x
        if self.nn_inputs is None:
            return self.nn(h)
        return call_function(self.nn, self.nn_inputs, {self.nn_inputs[0]: h})


def _gin_module(ctx: NodeCtx) -> GINConv:
    p = ctx.params
    spec = function_spec(ctx, "nn")
    if spec is not None:
        return GINConv(function_module(spec), p["eps"], p["train_eps"], list(spec["inputs"]))
    f, hidden = ctx.in_features, p["hidden"]
    layers: list[nn.Module] = [nn.Linear(f, hidden)]
    if p["batch_norm"]:
        layers.append(nn.BatchNorm1d(hidden))
    layers += [nn.ReLU(), nn.Linear(hidden, p["out"] or hidden)]
    return GINConv(nn.Sequential(*layers), p["eps"], p["train_eps"])


# ----- GAT -----------------------------------------------------------------------
class GATConv(nn.Module):
    """Multi-head graph attention; ``forward(x, edge_index, edge_attr=None)``."""

    def __init__(self, in_features: int, out: int, heads: int = 1, concat: bool = True, negative_slope: float = 0.2,
                 dropout: float = 0.0, add_self_loops: bool = True, residual: bool = False, bias: bool = True,
                 edge_dim: int | None = None):
        super().__init__()
        self.heads, self.out, self.concat = heads, out, concat
        self.negative_slope, self.dropout, self.add_self_loops = negative_slope, dropout, add_self_loops
        total = heads * out if concat else out
        self.lin = nn.Linear(in_features, heads * out, bias=False)
        self.att_src = nn.Parameter(torch.empty(1, heads, out))
        self.att_dst = nn.Parameter(torch.empty(1, heads, out))
        self.lin_edge = nn.Linear(edge_dim, heads * out, bias=False) if edge_dim else None
        self.att_edge = nn.Parameter(torch.empty(1, heads, out)) if edge_dim else None
        self.res = nn.Linear(in_features, total, bias=False) if residual else None
        self.bias = nn.Parameter(torch.zeros(total)) if bias else None
        _glorot(self.lin.weight, self.att_src, self.att_dst)
        if edge_dim:
            _glorot(self.lin_edge.weight, self.att_edge)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor | None = None) -> torch.Tensor:
        n, heads, c = x.shape[0], self.heads, self.out
        check_edge_index(edge_index, n)
        h = self.lin(x).view(n, heads, c)
        a_src, a_dst = (h * self.att_src).sum(-1), (h * self.att_dst).sum(-1)  # [N, heads]
        if self.add_self_loops:
            keep = edge_index[0] != edge_index[1]
            nodes = torch.arange(n, device=x.device)
            if edge_attr is not None:
                loop_attr = scatter(edge_attr[keep], edge_index[1, keep], n, "mean")
                edge_attr = torch.cat([edge_attr[keep], loop_attr])
            edge_index = torch.cat([edge_index[:, keep], torch.stack([nodes, nodes])], dim=1)
        src, dst = edge_index[0], edge_index[1]
        alpha = a_src[src] + a_dst[dst]
        if edge_attr is not None and self.lin_edge is not None:
            e = self.lin_edge(edge_attr).view(-1, heads, c)
            alpha = alpha + (e * self.att_edge).sum(-1)
        alpha = segment_softmax(F.leaky_relu(alpha, self.negative_slope), dst, n)
        alpha = F.dropout(alpha, self.dropout, self.training)
        out = scatter(h[src] * alpha.unsqueeze(-1), dst, n, "sum")
        out = out.reshape(n, heads * c) if self.concat else out.mean(dim=1)
        if self.res is not None:
            out = out + self.res(x)
        return out if self.bias is None else out + self.bias


def _gat_module(ctx: NodeCtx) -> GATConv:
    p = ctx.params
    ea = ctx.inputs.get("edge_attr")
    return GATConv(ctx.in_features, p["out"], p["heads"], p["concat"], p["negative_slope"], p["dropout"],
                   p["add_self_loops"], p["residual"], p["bias"], ea.shape[1] if ea is not None else None)


# ----- pooling ---------------------------------------------------------------------
@replaceable("global_pool")  # the ONNX export swaps in a one-hot pooling with a run-time graph count
def global_pool(x: torch.Tensor, batch: torch.Tensor | None = None, mode: str = "mean",
                num_graphs: int | None = None) -> torch.Tensor:
    """out[g] = sum / mean / max of the rows v of ``x`` with batch[v] = g; without ``batch`` one graph ([1, ...]).

    ``num_graphs`` None: batch.max() + 1 (as torch_geometric's pooling without ``size``).
    """
    if batch is None:
        if mode == "max":
            return x.amax(dim=0, keepdim=True) if x.shape[0] else x.new_zeros((1,) + tuple(x.shape[1:]))
        return x.sum(dim=0, keepdim=True) if mode == "sum" else x.sum(dim=0, keepdim=True) / max(x.shape[0], 1)
    if batch.shape[0] != x.shape[0]:
        raise ValueError(f"batch has {batch.shape[0]} graph ids, x has {x.shape[0]} nodes")
    if batch.numel() and batch.min().item() < 0:
        raise ValueError(f"batch holds graph id {batch.min().item()}; ids must be >= 0")
    seen = int(batch.max().item()) + 1 if batch.numel() else 0
    if num_graphs is None:
        num_graphs = seen
    elif seen > num_graphs:
        raise ValueError(f"batch holds graph id {seen - 1}, but num_graphs is {num_graphs}")
    return scatter(x, batch, num_graphs, mode)


# ----- generic message passing ---------------------------------------------------
class MessagePassing(nn.Module):
    """message block on every edge -> aggregate at targets -> update block; ``forward(x, edge_index, edge_attr=None)``."""

    def __init__(self, message: dict[str, Any], update: dict[str, Any] | None, aggr: str = "sum"):
        super().__init__()
        self.aggr = aggr
        self.message = function_module(message)
        self.message_inputs = list(message["inputs"])
        self.update = function_module(update) if update is not None else None
        self.update_inputs = list(update["inputs"]) if update is not None else []

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor | None = None) -> torch.Tensor:
        n = x.shape[0]
        check_edge_index(edge_index, n)
        per_edge = {"h_u": lambda: x[edge_index[0]], "h_v": lambda: x[edge_index[1]], "e_uv": lambda: edge_attr}
        msg = call_function(self.message, self.message_inputs,
                            {k: per_edge[k]() for k in self.message_inputs if k in per_edge})
        if msg.shape[0] != edge_index.shape[1]:
            raise ValueError(f"the message block returned {msg.shape[0]} rows for {edge_index.shape[1]} edges")
        agg = scatter(msg, edge_index[1], n, self.aggr)
        if self.update is None:
            return agg
        return call_function(self.update, self.update_inputs, {"h": x, "aggr": agg})

    def extra_repr(self) -> str:
        return f"aggr={self.aggr}"


# ----- registration ------------------------------------------------------------------
_GLOROT = {"lin.weight": "xavier_uniform", "bias": "zeros"}


def _args(e: Emit, *names: str) -> str:
    return ", ".join(e.inputs.get(k, "None") for k in names)


@torch_op("gcn_conv", init=_GLOROT, module=lambda ctx: GCNConv(
    ctx.in_features, ctx.params["out"], ctx.params["bias"], ctx.params["add_self_loops"], ctx.params["normalize"],
    ctx.params["improved"]))
def gcn_conv(ctx: NodeCtx, e: Emit) -> str:
    """``self.conv(x, edge_index, edge_weight)``."""
    return f"{e.self}({_args(e, 'x', 'edge_index', 'edge_weight')})"


@torch_op("sage_conv", module=lambda ctx: SAGEConv(
    ctx.in_features, ctx.params["out"], ctx.params["aggr"], ctx.params["root_weight"], ctx.params["bias"],
    ctx.params["normalize"], ctx.params["project"]))
def sage_conv(ctx: NodeCtx, e: Emit) -> str:
    """``self.conv(x, edge_index)``."""
    return f"{e.self}({_args(e, 'x', 'edge_index')})"


@torch_op("gin_conv", module=_gin_module)
def gin_conv(ctx: NodeCtx, e: Emit) -> str:
    """``self.conv(x, edge_index)``."""
    return f"{e.self}({_args(e, 'x', 'edge_index')})"


@torch_op("gat_conv", module=_gat_module)
def gat_conv(ctx: NodeCtx, e: Emit) -> str:
    """``self.conv(x, edge_index, edge_attr)``."""
    return f"{e.self}({_args(e, 'x', 'edge_index', 'edge_attr')})"


@torch_op("global_pool")
def global_pool_(ctx: NodeCtx, e: Emit) -> str:
    """``nng.ops.graph_nn.global_pool(x, batch, 'sum', G)`` (G from an int or a dim known at run time, else None)."""
    g = ctx.params["num_graphs"]
    size = str(g) if isinstance(g, int) else (e.dim(g) or "None")
    return f"nng.ops.graph_nn.global_pool({_args(e, 'x', 'batch')}, {ctx.params['mode']!r}, {size})"


@torch_op("message_passing", module=lambda ctx: MessagePassing(
    function_spec(ctx, "message"), function_spec(ctx, "update"), ctx.params["aggr"]))
def message_passing(ctx: NodeCtx, e: Emit) -> str:
    """``self.mp(x, edge_index, edge_attr)``."""
    return f"{e.self}({_args(e, 'x', 'edge_index', 'edge_attr')})"
