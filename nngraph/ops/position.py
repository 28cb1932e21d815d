"""Absolute position encodings added to the token embeddings (input transforms).

Relative encodings (RoPE, ALiBi, T5 buckets, Shaw) act inside attention: see the ``position``
parameter of the ``attention`` op.
"""

from __future__ import annotations

import math

from ..registry import InferCtx, op, p_enum, p_int
from ..types import TensorType, dims_differ, format_shape, is_int


def sinusoidal(pos: int, i: int, dim: int, base: float = 10000.0) -> float:
    """PE(pos, 2k) = sin(pos / base^(2k/d)), PE(pos, 2k+1) = cos(pos / base^(2k/d))
    (Vaswani et al. 2017; seed 002, "Sinusoidal Encodings")."""
    angle = pos / base ** ((i - i % 2) / dim)
    return math.sin(angle) if i % 2 == 0 else math.cos(angle)


def _count(ctx: InferCtx) -> int:
    if ctx.params["type"] != "learned":
        return 0
    return ctx.params["max_len"] * ctx.x.shape[-1]


@op("position_embedding", family="position", inputs=("x", "positions?"), params={
    "type": p_enum("learned table (GPT-2, BERT, ViT) or fixed sinusoids (original Transformer)", ("learned", "sinusoidal")),
    "max_len": p_int("number of positions (rows of the table); required for learned", None),
    "dim": p_int("embedding width (checked against the input's last dim; default: read from it)", None),
}, count=_count, kernels=3, example={"in": "tok", "type": "learned", "max_len": 1024},
    shape_hint="position_embedding takes x [batch, seq, dim] (and optionally integer positions [batch, seq])")
def position_embedding(ctx: InferCtx) -> TensorType:
    """Absolute position encodings (learned table or sinusoids) added to the input embeddings.

    out[b, t] = x[b, t] + P[pos(b, t)], pos = t unless a ``positions``
    input [B, T] gives them. learned: P is a table ``weight [max_len, dim]`` (seed 002, "Learned Absolute
    Positional Embeddings": E ∈ R^{n_max×d}); sinusoidal: P(pos, i) from :func:`sinusoidal`, no
    parameters (seed 002, "Sinusoidal Encodings").
    """
    x = ctx.inputs["x"]
    assert x is not None
    ctx.need_min_rank(x, 2, "x")
    ctx.need_float(x, "x")
    d = x.shape[-1]
    if not isinstance(d, int):
        ctx.fail(f"the feature dim of x must be a concrete size, got '{d}'", "declare the feature dim as an integer")
    kind, max_len, dim = ctx.params["type"], ctx.params["max_len"], ctx.params["dim"]
    if dim is not None and dim != d:
        ctx.fail(f"dim: expected the input width {d}, got {dim}", "drop dim or make it match the embeddings", "dim")
    if kind == "sinusoidal" and d % 2:
        ctx.fail(f"sinusoidal encodings pair sin/cos dims, so the width must be even, got {d}", None, "type")
    if kind == "learned" and max_len is None:
        ctx.fail("a learned position table needs max_len (its number of rows)", "e.g. max_len: 1024", "type")
    positions = ctx.inputs.get("positions")
    if positions is not None:
        if not is_int(positions.dtype):
            ctx.fail(f"positions must be integer ids, got {positions.dtype}", "declare it with dtype: int64", "positions")
        if positions.rank != x.rank - 1 or any(dims_differ(p, q) for p, q in zip(positions.shape, x.shape)):
            ctx.fail(f"positions: expected {format_shape(x.shape[:-1])} (x without its last dim), got "
                     f"{format_shape(positions.shape)}", None, "positions")
    else:
        seq = x.shape[-2]
        if max_len is not None and isinstance(seq, int) and seq > max_len:
            ctx.fail(f"sequence length {seq} exceeds max_len {max_len}", "raise max_len or shorten the input", "max_len")
    return x
