"""Export lowering of graph pooling: the number of graphs comes from the ``batch`` vector at run time.

``global_pool`` in torch reads ``batch.max().item() + 1`` in Python, which a trace would freeze.
Here, with G = max(batch) + 1 as a tensor (or the spec's integer ``num_graphs``), pooling is a
one-hot [G, N] membership matrix: sum = M·x, mean = sum / max(count, 1), max = the masked maximum
(0 for an empty graph, as in torch) -- exact and dynamic in N and G. The message-passing layers
need no lowering: their gathers and scatters are traced with the corrected ``index_add`` /
``scatter_reduce`` translations of :mod:`nngraph.compilers.onnx.symbolics` (duplicates accumulate).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .registry import declare, lowering

if TYPE_CHECKING:
    import torch

#: torch's ``scatter_reduce(amax)``, exported as ``ScatterElements(reduction="max")`` (:mod:`..symbolics`)
_SCATTER_MAX = (18, "ScatterElements with reduction max (opset 18)")


def _max_aggregation(node: Any) -> tuple[int, str] | None:
    """SAGE and message passing aggregate by max with ``aggr: max``."""
    return _SCATTER_MAX if node.params.get("aggr") == "max" else None


_GATHER_SCATTER = "gather + ScatterElements{} message passing (dynamic nodes/edges)"
declare("gcn_conv", _GATHER_SCATTER.format("(add)"))
declare("gin_conv", _GATHER_SCATTER.format("(add)"))
# GAT's segment softmax subtracts each node's max score over its incoming edges
declare("gat_conv", "segment softmax with ScatterElements(max/add) (dynamic nodes/edges)", needs=lambda node: _SCATTER_MAX)
declare("sage_conv", _GATHER_SCATTER.format(""), needs=_max_aggregation)
declare("message_passing", "message block on gathered edges + ScatterElements aggregation (dynamic nodes/edges)",
        needs=_max_aggregation)


@lowering("global_pool", "one-hot [graphs, nodes] pooling with the graph count from the batch vector",
          replaces_function=True)
def global_pool(x: torch.Tensor, batch: torch.Tensor | None = None, mode: str = "mean",
                num_graphs: int | None = None) -> torch.Tensor:
    """Drop-in for :func:`nngraph.compilers.torch.ops.graph_nn.global_pool` while exporting."""
    import torch

    if batch is None:
        batch = torch.zeros_like(x[:, 0], dtype=torch.int64)
        num_graphs = 1
    g = num_graphs if isinstance(num_graphs, int) else batch.max() + 1
    member = batch.unsqueeze(0) == torch.arange(g).unsqueeze(1)          # [G, N]
    count = member.sum(1).to(x.dtype)                                       # [G]
    flat = x.reshape(x.shape[0], -1)
    if mode == "max":
        low = torch.full((), float("-inf"), dtype=x.dtype)
        vals = torch.where(member.unsqueeze(-1), flat.unsqueeze(0), low).amax(dim=1)
        out = torch.where(count.unsqueeze(-1) > 0, vals, torch.zeros((), dtype=x.dtype))
    else:
        out = member.to(x.dtype) @ flat
        if mode == "mean":
            out = out / count.clamp(min=1).unsqueeze(-1)
    return out.reshape((out.shape[0],) + tuple(x.shape[1:]))
