"""Sequence state-space models: the selective SSM block of Mamba.

The linear state space model of seed 000 ("State Space Models (SSMs)"): x_t = A x_{t-1} + B u_t,
y_t = C x_t + D u_t. Mamba (seed 002, "Trade-Offs and Mamba"; Gu & Dao, 2023) makes it *selective*:
B, C and the step size Δ are computed from the input at every position, and A is discretized per
step, so the state transition depends on the input.
"""

from __future__ import annotations

import math

from ..registry import InferCtx, op, p_bool, p_enum, p_int
from ..cost.rules import CostCtx, dense
from ..types import TensorType, format_shape


def _sizes(ctx: InferCtx) -> tuple[int, int, int]:
    """(d_model, d_inner, dt_rank) for the node."""
    p = ctx.params
    d = ctx.x.shape[-1]
    return d, p["expand"] * d, p["dt_rank"] or math.ceil(d / 16)


def _mamba_count(ctx: InferCtx) -> int:
    p = ctx.params
    d, di, r = _sizes(ctx)
    n, k = p["d_state"], p["d_conv"]
    in_proj = d * 2 * di + (2 * di if p["bias"] else 0)
    conv = di * k + (di if p["conv_bias"] else 0)
    x_proj = di * (r + 2 * n)
    dt_proj = r * di + di
    a_log, d_skip = di * n, di
    out_proj = di * d + (d if p["bias"] else 0)
    return in_proj + conv + x_proj + dt_proj + a_log + d_skip + out_proj


def _mamba_flops(c: CostCtx) -> int:
    """in_proj 2·BT·D·2d_i + depthwise conv 2·B·d_i·k·(T+k-1) (left-padded, then cut to T) + x_proj 2·BT·d_i·(r+2N)
    + dt_proj 2·BT·r·d_i + out_proj 2·BT·d_i·D; the scan itself is elementwise (h = a⊙h + b, y = Σ h⊙C)."""
    b, t, d = c.x
    p = c.params
    di, r, n, k = p["expand"] * d, p["dt_rank"] or math.ceil(d / 16), p["d_state"], p["d_conv"]
    bt = b * t
    return (dense(bt, d, 2 * di) + 2 * b * di * k * (t + k - 1) + dense(bt, di, r + 2 * n) + dense(bt, r, di)
            + dense(bt, di, d))


def _mamba_kernels(c: CostCtx) -> int:
    """The projections, the convolution and the discretization (21 kernels), then the scan step by step: 4 per
    step (h = a⊙h + b⊙x, y = Σ h⊙C) -- counted with a TorchDispatchMode on the zoo's CPU lowering."""
    return 21 + 4 * c.x[1]


@op("mamba", family="ssm", flops=_mamba_flops, kernels=_mamba_kernels, params={
    "d_state": p_int("SSM state size N per channel", 16),
    "d_conv": p_int("width of the causal depthwise conv1d", 4),
    "expand": p_int("inner width = expand · d_model", 2),
    "dt_rank": p_int("rank of the Δ projection (default: ceil(d_model / 16))", None),
    "conv_bias": p_bool("bias on the depthwise conv", True),
    "bias": p_bool("biases on in_proj and out_proj", False),
    "scan": p_enum("how the recurrence is evaluated: sequential (one step per position) or chunked "
                   "(all chunks of chunk_size in parallel, positions stepped within a chunk, state carried between chunks)", ("sequential", "chunked"),
                   "sequential"),
    "chunk_size": p_int("positions per chunk for scan: chunked (default 64)", None),
}, count=_mamba_count, example={"in": "x", "d_state": 16, "d_conv": 4, "expand": 2},
    shape_hint="mamba takes x [batch, seq, d_model]")
def mamba(ctx: InferCtx) -> TensorType:
    """Selective SSM block (Mamba): x [B, T, D] -> [B, T, D] (seed 000 "State Space Models"; seed 002 "Trade-Offs and Mamba").

    With d_inner = expand·D, r = dt_rank, N = d_state:
    [u, z] = in_proj(x) (each [B, T, d_inner]); u = silu(causal depthwise conv1d(u)) (kernel d_conv, left pad d_conv-1);
    [δ, B, C] = x_proj(u) (widths r, N, N); Δ = softplus(dt_proj(δ)); A = -exp(A_log);
    per channel c and step t: h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t u_t,  y_t = C_t · h_t + D ⊙ u_t;
    out = out_proj(y ⊙ silu(z)).
    params (mamba_ssm ``Mamba`` layout): in_proj.weight [2·d_inner, D] (+ in_proj.bias with bias),
    conv1d.weight [d_inner, 1, d_conv] + conv1d.bias [d_inner] (conv_bias), x_proj.weight [r + 2N, d_inner] (no bias),
    dt_proj.weight [d_inner, r] + dt_proj.bias [d_inner], A_log [d_inner, N], D [d_inner],
    out_proj.weight [D, d_inner] (+ out_proj.bias with bias).
    """
    x = ctx.x
    if x.rank != 3:
        ctx.fail(f"x must be [batch, seq, d_model], got {format_shape(x.shape)}", ctx.op.shape_hint)
    ctx.need_float(x)
    if not isinstance(x.shape[-1], int):
        ctx.fail(f"d_model (the last dim of x) must be a concrete size, got '{x.shape[-1]}'")
    if ctx.params["scan"] == "sequential" and ctx.params["chunk_size"] is not None:
        ctx.fail("chunk_size only applies to scan: chunked", "set scan: chunked, or remove chunk_size", "chunk_size")
    return x
