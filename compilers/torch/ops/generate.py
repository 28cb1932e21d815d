"""Torch implementations of the generators (nngraph/ops/generate.py).

``torch.arange(0, x.shape[1], 1, dtype=torch.int64, device=self.n.device)``,
``torch.full((x.shape[1], x.shape[1]), -100.0, dtype=torch.float32, device=self.n.device)``,
``torch.full_like(x, 1.0)``, ``torch.meshgrid(a, b, indexing='ij')``. Each generator node owns an
empty non-persistent buffer only to learn the model's device (it follows ``.to(device)`` and is
not in the state dict); symbolic sizes read the graph inputs' shapes at run time.
"""

from __future__ import annotations

import torch
from torch import nn

from nngraph.ops.generate import FILLS
from nngraph.types import Dim

from ..registry import Emit, NodeCtx, torch_op


def _anchor(ctx: NodeCtx) -> nn.Buffer:
    return nn.Buffer(torch.empty(0), persistent=False)


def _size(e: Emit, d: Dim, what: str) -> str:
    src = e.dim(d)
    if src is None:
        raise ValueError(f"{what} {d!r} cannot be computed at run time (not a dim of a graph input)")
    return src


@torch_op("arange", module=_anchor)
def arange(ctx: NodeCtx, e: Emit) -> str:
    """``torch.arange(start, end, step, dtype=..., device=...)``."""
    p = ctx.params
    return (f"torch.arange({p['start']}, {_size(e, p['end'], 'end')}, {p['step']}, dtype=torch.{ctx.out.dtype}, "
            f"device={e.self}.device)")


def _fill(ctx: NodeCtx, e: Emit) -> str:
    value = FILLS[ctx.op] if FILLS[ctx.op] is not None else ctx.params["value"]
    dtype = f"torch.{ctx.out.dtype}"
    if ctx.params["shape"] is None:
        return f"torch.full_like({e.inputs['like']}, {float(value)!r}, dtype={dtype})"
    sizes = ", ".join(_size(e, d, "size") for d in ctx.params["shape"])
    return f"torch.full(({sizes},), {float(value)!r}, dtype={dtype}, device={e.self}.device)"


for _name in FILLS:
    torch_op(_name, module=_anchor)(_fill)


@torch_op("meshgrid")
def meshgrid(ctx: NodeCtx, e: Emit) -> str:
    """``torch.meshgrid(a, b, indexing=...)``: a tuple in output order (one input: its grid itself)."""
    expr = f"torch.meshgrid({', '.join(e.all_inputs)}, indexing={ctx.params['indexing']!r})"
    return expr if len(e.all_inputs) > 1 else f"{expr}[0]"
