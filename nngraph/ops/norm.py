"""Normalization: batch_norm, layer_norm, rms_norm, group_norm, Dynamic Tanh (DyT) and layer scale.

Formulas: seed 002 "Pooling, Hierarchical Representation, and Normalization" (batch norm
normalizes each feature map across the batch), seed 002 "Encoder Architecture"
(LayerNorm(x) = γ·(x − μ)/√(σ² + ε) + β over the feature dim), seed 000 "Practical
Implementation" (batch normalization, Ioffe & Szegedy 2015; Dynamic Tanh, Zhu et al. 2025:
an element-wise tanh(αx) replacing normalization layers). RMSNorm (Zhang & Sennrich 2019) and
GroupNorm (Wu & He 2018) are not in the seeds; their formulas are given on each op.

Parameter counts follow torch.nn: running statistics of batch_norm are buffers, not parameters.
"""

from __future__ import annotations

import math

from ..registry import InferCtx, op, p_bool, p_float, p_int, p_ints
from ..types import TensorType, dims_differ, format_shape


def _channels(ctx: InferCtx, axis: int) -> int:
    x = ctx.x
    c = x.shape[axis]
    if not isinstance(c, int):
        ctx.fail(f"the normalized dim (dim {axis if axis >= 0 else x.rank + axis}) of {format_shape(x.shape)} must be a concrete size, got '{c}'",
                 "declare that dim of the graph input as an integer")
    return c


@op("batch_norm", family="norm", params={
    "eps": p_float("added to the variance for numerical stability", 1e-5, min=0.0),
    "momentum": p_float("running-statistics update factor", 0.1, min=0.0, max=1.0),
    "affine": p_bool("learnable per-channel scale γ (weight) and shift β (bias)", True),
    "track_running_stats": p_bool("keep running mean/variance buffers for evaluation", True),
}, count=lambda ctx: 2 * ctx.x.shape[1] if ctx.params["affine"] else 0,
    kernels=2, example={"in": "conv1"}, shape_hint="batch_norm takes [batch, C], [batch, C, L] or [batch, C, H, W]")
def batch_norm(ctx: InferCtx) -> TensorType:
    """Batch normalization over channel dim 1: y = γ·(x − μ_B)/√(σ²_B + ε) + β, statistics per channel over batch and spatial dims (seed 002, "Pooling, Hierarchical Representation, and Normalization"; seed 000, "Practical Implementation").

    One op for [batch, C] (BatchNorm1d), [batch, C, L] (BatchNorm1d) and [batch, C, H, W] (BatchNorm2d).
    params: weight [C], bias [C] (with affine); buffers running_mean [C], running_var [C], num_batches_tracked.
    """
    ctx.need_rank(ctx.x, (2, 3, 4))
    ctx.need_float(ctx.x)
    _channels(ctx, 1)
    return ctx.x


def _normalized_shape(ctx: InferCtx) -> tuple[int, ...]:
    """The trailing dims being normalized: the ``shape`` param, or the last dim."""
    x, shape = ctx.x, ctx.params["shape"]
    if shape is None:
        ctx.need_min_rank(x, 1)
        return (_channels(ctx, -1),)
    shape = tuple(shape) if isinstance(shape, list) else (shape,)
    if len(shape) > x.rank:
        ctx.fail(f"shape {list(shape)} has {len(shape)} dims but the input {format_shape(x.shape)} has only {x.rank}",
                 "shape lists the trailing dims to normalize over", "shape")
    trailing = x.shape[x.rank - len(shape):]
    if any(dims_differ(a, b) for a, b in zip(trailing, shape)):
        ctx.fail(f"shape {list(shape)} must equal the trailing dims of the input {format_shape(x.shape)}, got {format_shape(trailing)}",
                 "shape lists the trailing dims to normalize over (omit it to normalize the last dim)", "shape")
    return shape


_SHAPE_DOC = "normalized_shape: the trailing dims to normalize over (default: the last dim)"

#: the scale offset of layer_norm and rms_norm: y = (offset + γ)·x̂ (Gemma's (1 + w)); γ starts at 1 − offset
_OFFSET = p_float("added to the learned scale: y = (offset + γ)·x̂; Gemma uses 1 (γ then starts at 0)", 0.0)


def _check_offset(ctx: InferCtx) -> None:
    """An offset shifts the learned scale γ, so a norm without γ has nothing to shift."""
    if ctx.params["offset"] and not ctx.params["elementwise_affine"]:
        ctx.fail("offset adds to the learned scale, and elementwise_affine: false has none",
                 "drop offset, or set elementwise_affine: true", "offset")


def _layer_norm_count(ctx: InferCtx) -> int:
    if not ctx.params["elementwise_affine"]:
        return 0
    return math.prod(_normalized_shape(ctx)) * (2 if ctx.params["bias"] else 1)


@op("layer_norm", family="norm", params={
    "shape": p_ints(_SHAPE_DOC, None),
    "eps": p_float("added to the variance for numerical stability", 1e-5, min=0.0),
    "elementwise_affine": p_bool("learnable scale γ (weight) and shift β (bias) per normalized element", True),
    "bias": p_bool("learn the shift β (with elementwise_affine)", True),
    "offset": _OFFSET,
}, count=_layer_norm_count, example={"in": "x"})
def layer_norm(ctx: InferCtx) -> TensorType:
    """Layer normalization: y = (offset + γ)·(x − μ)/√(σ² + ε) + β, μ and σ² over the trailing ``shape`` dims of each sample (seed 002, "Encoder Architecture").

    ``offset`` 0 is the usual γ with γ initialized to 1; ``offset: 1`` stores γ around 0 (initialized to 0).
    params: weight [*shape], bias [*shape] (with elementwise_affine; bias unless bias: false).
    """
    _check_offset(ctx)
    ctx.need_float(ctx.x)
    _normalized_shape(ctx)
    return ctx.x


@op("rms_norm", family="norm", params={
    "shape": p_ints(_SHAPE_DOC, None),
    "eps": p_float("added to the mean square for numerical stability", 1e-6, min=0.0),
    "elementwise_affine": p_bool("learnable scale γ (weight) per normalized element", True),
    "offset": _OFFSET,
}, count=lambda ctx: math.prod(_normalized_shape(ctx)) if ctx.params["elementwise_affine"] else 0,
    kernels=lambda c: 5 + bool(c.params["elementwise_affine"]) + bool(c.params["offset"]), example={"in": "x", "eps": 1e-6})
def rms_norm(ctx: InferCtx) -> TensorType:
    """RMS normalization (Zhang & Sennrich 2019, used by LLaMA): y = (offset + γ)·x/√(mean(x²) + ε) over the trailing ``shape`` dims — LayerNorm without the mean and the shift (seed 002, "Encoder Architecture").

    ``offset`` 0 is the usual γ·x/rms(x) with γ initialized to 1; Gemma stores γ around 0 and scales by
    (1 + γ), which ``offset: 1`` reproduces (γ then initialized to 0, so a new model starts at the identity scale).
    params: weight [*shape] (with elementwise_affine).
    """
    _check_offset(ctx)
    ctx.need_float(ctx.x)
    _normalized_shape(ctx)
    return ctx.x


@op("group_norm", family="norm", params={
    "groups": p_int("number of channel groups; must divide the channels"),
    "eps": p_float("added to the variance for numerical stability", 1e-5, min=0.0),
    "affine": p_bool("learnable per-channel scale γ (weight) and shift β (bias)", True),
}, count=lambda ctx: 2 * ctx.x.shape[1] if ctx.params["affine"] else 0,
    example={"in": "x", "groups": 32}, shape_hint="group_norm takes [batch, C, *]")
def group_norm(ctx: InferCtx) -> TensorType:
    """Group normalization (Wu & He 2018): channels split into ``groups`` groups, each normalized over its channels and all spatial positions, then y = γ·x̂ + β per channel (seed 002, "Pooling, Hierarchical Representation, and Normalization", as batch norm without batch statistics).

    params: weight [C], bias [C] (with affine).
    """
    ctx.need_min_rank(ctx.x, 2)
    ctx.need_float(ctx.x)
    c, g = _channels(ctx, 1), ctx.params["groups"]
    if c % g:
        ctx.fail(f"groups {g} must divide the channels: {c} is not divisible by {g}",
                 f"choose a divisor of {c}", "groups")
    return ctx.x


@op("dyt", family="norm", params={
    "alpha_init": p_float("initial value of the learnable scalar α", 0.5, min=0.0),
}, count=lambda ctx: 1 + 2 * ctx.x.shape[-1], example={"in": "x", "alpha_init": 0.5})
def dyt(ctx: InferCtx) -> TensorType:
    """Dynamic Tanh (Zhu et al. 2025): y = γ·tanh(αx) + β over the last dim, a statistics-free replacement for normalization layers (seed 000, "Practical Implementation").

    params: alpha [1] (a scalar, initialized to alpha_init), weight [C] (ones), bias [C] (zeros); C = last dim.
    """
    ctx.need_min_rank(ctx.x, 1)
    ctx.need_float(ctx.x)
    _channels(ctx, -1)
    return ctx.x


@op("layer_scale", family="norm", params={
    "init_value": p_float("initial value of every γ_c (ConvNeXt 1e-6; CaiT 1e-5 to 1e-6 by depth)", 1e-6),
    "dim": p_int("the channel dim γ runs along (-1: channels last, as ConvNeXt's and CaiT's blocks; 1: [batch, C, H, W])",
                 -1, min=None),
}, count=lambda ctx: ctx.x.shape[ctx.params["dim"]], example={"in": "branch", "init_value": 1e-6})
def layer_scale(ctx: InferCtx) -> TensorType:
    """Layer scale (Touvron et al. 2021, CaiT; ConvNeXt): y = γ ⊙ x, one learnable γ_c per channel along ``dim``.

    γ broadcasts over every other dim; every γ_c starts at ``init_value`` so a residual branch starts near zero.

    params: γ [C] stored at the node's name (state_dict key ``<node>``), C = x.shape[dim], initialized to init_value.
    """
    x, dim = ctx.x, ctx.params["dim"]
    ctx.need_float(x)
    if not -x.rank <= dim < x.rank:
        ctx.fail(f"dim {dim} is out of range for an input of rank {x.rank}: expected -{x.rank}..{x.rank - 1}",
                 "-1 for channels last, 1 for [batch, C, H, W]", "dim")
    _channels(ctx, dim)
    return x
