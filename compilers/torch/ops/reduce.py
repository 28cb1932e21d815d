"""Torch implementations of the reductions and scans (nngraph/ops/reduce.py).

``torch.mean/sum/amax/amin/logsumexp(x, dim=..., keepdim=...)``, ``torch.prod`` once per dim (it takes one),
``torch.argmax(x, dim=d)``, ``torch.cumsum(x, dim=d)``, ``F.normalize(x, dim=d, eps=...)``.
"""

from __future__ import annotations

from nngraph.types import is_float

from ..registry import Emit, NodeCtx, torch_op

#: reduce mode -> torch function taking a tuple of dims
_TUPLE_FNS = {"mean": "torch.mean", "sum": "torch.sum", "max": "torch.amax", "min": "torch.amin",
              "logsumexp": "torch.logsumexp"}


def _keep(ctx: NodeCtx) -> str:
    return ", keepdim=True" if ctx.params["keepdim"] else ""


@torch_op("reduce")
def reduce(ctx: NodeCtx, e: Emit) -> str:
    """One call over all dims; ``prod`` (one dim per call in torch) nests, last dim first so indices stay valid."""
    dim = ctx.params["dim"]
    dims = dim if isinstance(dim, list) else [dim]
    if ctx.params["mode"] != "prod":
        return f"{_TUPLE_FNS[ctx.params['mode']]}({e.x}, dim={tuple(dim) if isinstance(dim, list) else dim}{_keep(ctx)})"
    expr = e.x
    for d in sorted((d % ctx.x.rank for d in dims), reverse=True):
        expr = f"torch.prod({expr}, dim={d}{_keep(ctx)})"
    return expr


def _arg(ctx: NodeCtx, e: Emit) -> str:
    return f"torch.{ctx.op}({e.x}, dim={ctx.params['dim']}{_keep(ctx)})"


torch_op("argmax")(_arg)
torch_op("argmin")(_arg)


@torch_op("cumsum")
def cumsum(ctx: NodeCtx, e: Emit) -> str:
    """``torch.cumsum(x, dim=d)`` (int64 for integer and bool inputs, as the shape rule says)."""
    dtype = "" if is_float(ctx.x.dtype) else ", dtype=torch.int64"
    return f"torch.cumsum({e.x}, dim={ctx.params['dim']}{dtype})"


@torch_op("normalize")
def normalize(ctx: NodeCtx, e: Emit) -> str:
    """``F.normalize(x, p=2, dim=d, eps=eps)``."""
    return f"F.normalize({e.x}, dim={ctx.params['dim']}, eps={ctx.params['eps']!r})"
