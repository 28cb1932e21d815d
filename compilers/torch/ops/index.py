"""Torch implementations of the indexing ops (nngraph/ops/index.py).

``torch.gather(x, -1, idx)``, ``torch.index_select(x, 0, ids)``, ``F.one_hot(x, 10).to(torch.float32)``, and
``self.n[ids]`` for a lookup (its table a non-persistent buffer: it follows ``.to(device)``, stays out of the
state dict, and exports as a constant).
"""

from __future__ import annotations

import torch
from torch import nn

from ..registry import Emit, NodeCtx, torch_op


@torch_op("gather")
def gather(ctx: NodeCtx, e: Emit) -> str:
    """``torch.gather(x, dim, index)``."""
    return f"torch.gather({e.inputs['x']}, {ctx.params['dim']}, {e.inputs['index']})"


@torch_op("index_select")
def index_select(ctx: NodeCtx, e: Emit) -> str:
    """``torch.index_select(x, dim, index)``."""
    return f"torch.index_select({e.inputs['x']}, {ctx.params['dim']}, {e.inputs['index']})"


@torch_op("one_hot")
def one_hot(ctx: NodeCtx, e: Emit) -> str:
    """``F.one_hot(x.long(), classes).to(dtype)``."""
    return f"F.one_hot({e.x}.long(), {ctx.params['classes']}).to(torch.{ctx.params['dtype']})"


def _table(ctx: NodeCtx) -> nn.Buffer:
    return nn.Buffer(torch.tensor(ctx.params["table"], dtype=getattr(torch, ctx.params["dtype"])), persistent=False)


@torch_op("lookup", module=_table)
def lookup(ctx: NodeCtx, e: Emit) -> str:
    """``self.<node>[x]``: rows of the table buffer."""
    return f"{e.self}[{e.x}]"
