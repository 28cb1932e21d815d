"""Shape helpers shared by the families' shape rules."""

from __future__ import annotations

from ..registry import InferCtx
from ..types import Dim, TensorType, broadcast_dim, dim_add, dim_floordiv, dim_mul, format_shape


def broadcast(ctx: InferCtx, a: TensorType, b: TensorType) -> tuple[Dim, ...]:
    """NumPy broadcast of two shapes, failing with both shapes in the message."""
    ra, rb = a.shape[::-1], b.shape[::-1]
    out = []
    for i in range(max(len(ra), len(rb))):
        da = ra[i] if i < len(ra) else 1
        db = rb[i] if i < len(rb) else 1
        d = broadcast_dim(da, db)
        if d is None:
            ctx.fail(f"shapes {format_shape(a.shape)} and {format_shape(b.shape)} do not broadcast (dim {-i - 1}: {da} vs {db})",
                     "broadcasting needs equal dims or 1 in each position, aligned from the right")
        out.append(d)
    return tuple(out[::-1])


def norm_axis(ctx: InferCtx, axis: int, rank: int, param: str = "dim") -> int:
    """A possibly negative axis as a non-negative index, failing when out of range."""
    if not -rank <= axis < rank:
        ctx.fail(f"{param} {axis} is out of range for a rank-{rank} input", f"use -{rank}..{rank - 1}", param)
    return axis % rank


def as_tuple(value: int | list[int], n: int, ctx: InferCtx, param: str) -> tuple[int, ...]:
    """An int or list of ints as an n-tuple (kernel sizes, strides, paddings)."""
    if isinstance(value, int):
        return (value,) * n
    if len(value) != n:
        ctx.fail(f"{param} needs {n} values (one per spatial dim), got {len(value)}", None, param)
    return tuple(value)


def conv_out(size: Dim, kernel: int, stride: int, pad_total: int, dilation: int = 1) -> Dim:
    """Output length of a convolution/pooling window: floor((L + pad - d(k-1) - 1)/s) + 1."""
    return dim_add(dim_floordiv(dim_add(size, pad_total - dilation * (kernel - 1) - 1), stride), 1)


def conv_transpose_out(size: Dim, kernel: int, stride: int, pad: int, output_padding: int = 0, dilation: int = 1) -> Dim:
    """Output length of a transposed convolution: (L-1)s - 2p + d(k-1) + output_padding + 1."""
    return dim_add(dim_mul(dim_add(size, -1), stride), -2 * pad + dilation * (kernel - 1) + output_padding + 1)
