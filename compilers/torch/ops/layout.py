"""Torch implementations of the layout ops (nngraph/ops/layout.py).

``F.pad(x, [2, 0], mode='constant', value=0.0)``, ``torch.roll(x, shifts=(-3,), dims=(1,))``,
``x.repeat(1, 4, 1)``, ``x.expand(x.shape[0], 4, -1)``, ``torch.stack([a, b], dim=1)``,
``torch.unbind(x, dim=1)`` (unpacked into the named outputs), ``x.squeeze(3).squeeze(1)``,
``torch.unsqueeze(x, 1)``, ``torch.einsum('bhid,bhjd->bhij', q, k)``.
"""

from __future__ import annotations

from nngraph.types import format_shape

from ..registry import Emit, NodeCtx, torch_op


def _tuple(value: int | list[int]) -> str:
    return str(tuple(value if isinstance(value, list) else [value]))


@torch_op("pad")
def pad(ctx: NodeCtx, e: Emit) -> str:
    """``F.pad(x, pads, mode=..., value=...)`` (value only for constant padding)."""
    mode = ctx.params["mode"]
    value = f", value={float(ctx.params['value'])!r}" if mode == "constant" else ""
    return f"F.pad({e.x}, {list(ctx.params['pads'])!r}, mode={mode!r}{value})"


@torch_op("roll")
def roll(ctx: NodeCtx, e: Emit) -> str:
    """``torch.roll(x, shifts=..., dims=...)``."""
    return f"torch.roll({e.x}, shifts={_tuple(ctx.params['shifts'])}, dims={_tuple(ctx.params['dims'])})"


@torch_op("tile")
def tile(ctx: NodeCtx, e: Emit) -> str:
    """``x.repeat(*reps)``, reps padded with leading 1s to the input's rank (torch's repeat needs that many)."""
    reps = [1] * (ctx.x.rank - len(ctx.params["reps"])) + list(ctx.params["reps"])
    return f"{e.x}.repeat({', '.join(map(str, reps))})"


@torch_op("expand")
def expand(ctx: NodeCtx, e: Emit) -> str:
    """``x.expand(...)``: -1/0 keep a dim, a symbolic name reads its size at run time."""
    dims = []
    for d in ctx.params["shape"]:
        src = str(-1 if d == 0 else d) if isinstance(d, int) else e.dim(d)
        if src is None:
            raise ValueError(f"expand to {format_shape(ctx.params['shape'])}: cannot compute {d!r} at run time "
                             f"(not a dim of the input or of a graph input)")
        dims.append(src)
    return f"{e.x}.expand({', '.join(dims)})"


@torch_op("stack")
def stack(ctx: NodeCtx, e: Emit) -> str:
    """``torch.stack([a, b, ...], dim=d)``."""
    return f"torch.stack([{', '.join(e.all_inputs)}], dim={ctx.params['dim']})"


@torch_op("unstack")
def unstack(ctx: NodeCtx, e: Emit) -> str:
    """``torch.unbind(x, dim=d)``: a tuple in output order (one slice: the tensor itself)."""
    expr = f"torch.unbind({e.x}, dim={ctx.params['dim']})"
    return expr if len(ctx.params["names"]) > 1 else f"{expr}[0]"


@torch_op("squeeze")
def squeeze(ctx: NodeCtx, e: Emit) -> str:
    """``x.squeeze(d)`` per dim, highest first so the others keep their index (the TorchScript ONNX exporter
    cannot export ``squeeze`` over a tuple of dims)."""
    dim = ctx.params["dim"]
    expr = e.x
    for d in sorted((d % ctx.x.rank for d in (dim if isinstance(dim, list) else [dim])), reverse=True):
        expr = f"{expr}.squeeze({d})"
    return expr


@torch_op("unsqueeze")
def unsqueeze(ctx: NodeCtx, e: Emit) -> str:
    """``torch.unsqueeze(x, d)``."""
    return f"torch.unsqueeze({e.x}, {ctx.params['dim']})"


@torch_op("einsum")
def einsum(ctx: NodeCtx, e: Emit) -> str:
    """``torch.einsum('eq', a, b, ...)``; '...' summed away is kept in front, then summed by ``.sum`` (ONNX Einsum
    refuses inputs with '...' under an output without it, where torch sums them)."""
    eq = ctx.params["equation"].replace(" ", "")
    lhs, out = eq.split("->")
    summed = "..." in lhs and "..." not in out
    call = f"torch.einsum({f'{lhs}->...{out}' if summed else eq!r}, {', '.join(e.all_inputs)})"
    n = ctx.meta["ellipsis_rank"]
    return f"{call}.sum(dim={tuple(range(n))!r})" if summed and n else call
