"""Torch implementations of the generators (nngraph/ops/generate.py).

``torch.arange(0, x.shape[1], 1, dtype=torch.int64, device=self.n.device)``,
``torch.full((x.shape[1], x.shape[1]), -100.0, dtype=torch.float32, device=self.n.device)``,
``torch.full_like(x, 1.0)``, ``torch.meshgrid(a, b, indexing='ij')``. Each generator node owns an
empty non-persistent buffer only to learn the model's device (it follows ``.to(device)`` and is
not in the state dict); symbolic sizes read the graph inputs' shapes at run time.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from nngraph import symdim
from nngraph.ops.generate import FILLS
from nngraph.types import Dim

from ..registry import Emit, NodeCtx, torch_op


def _anchor(ctx: NodeCtx) -> nn.Buffer:
    return nn.Buffer(torch.empty(0), persistent=False)


def _size(e: Emit, d: Dim, what: str) -> str:
    """Python for dim ``d`` at run time: an int, a graph input's size, or an expression of such sizes."""
    src = e.dim(d)
    if src is not None:
        return src
    sources = {name: e.dim(name) for name in symdim.symbols_of(d)}
    missing = sorted(name for name, src in sources.items() if src is None)
    if missing or not sources:
        raise ValueError(f"{what} {d!r} cannot be computed at run time ({', '.join(missing) or d} is not a dim of a graph input)")
    return re.sub(r"[A-Za-z_]\w*", lambda m: sources.get(m.group(0), m.group(0)), str(d))


@torch_op("arange", module=_anchor)
def arange(ctx: NodeCtx, e: Emit) -> str:
    """``torch.arange(start, end, step, dtype=..., device=...)``."""
    start, end, step = (_size(e, d, what) for d, what in zip(ctx.meta["range"], ("start", "end", "step")))
    return f"torch.arange({start}, {end}, {step}, dtype=torch.{ctx.out.dtype}, device={e.self}.device)"


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
