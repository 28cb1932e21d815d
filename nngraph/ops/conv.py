"""Convolutions: conv1d, conv2d, conv_transpose2d, upsample and the ViT patch embedding.

Formulas: seed 002 "The Convolution Operation" — S(i, j) = Σ_m Σ_n I(i+m, j+n)·F(m, n),
weights shared across positions, so a layer with 64 3×3 filters on an RGB input has
64·3·3·3 + 64 = 1,792 parameters — and seed 000 "Convolutional Neural Networks (CNNs)".
Output sizes follow PyTorch: L_out = floor((L + 2p − d(k−1) − 1)/s) + 1 (convolution),
L_out = (L−1)s − 2p + d(k−1) + output_padding + 1 (transposed convolution).

Inputs are channels-first: [batch, channels, length] or [batch, channels, height, width].
The input channel count is read from the input (``in_channels`` is optional and only
checked); ``groups`` must divide both channel counts.
"""

from __future__ import annotations

import math
from typing import Any

from ..registry import InferCtx, Param, op, p_bool, p_enum, p_int, p_ints
from ..cost.rules import CostCtx
from ..types import Dim, TensorType, dim_add, dim_floordiv, dim_mul, doubt_size, format_shape
from ._shapes import as_tuple, conv_out, conv_transpose_out

AXES = {1: ("length",), 2: ("height", "width")}
LAYOUT = {1: "[batch, channels, length]", 2: "[batch, channels, height, width]"}


# ----- helpers shared with pool.py ---------------------------------------
def spatial_input(ctx: InferCtx, n: int) -> TensorType:
    """The input, checked to be a float tensor of rank n + 2 (channels-first)."""
    x = ctx.x
    if x.rank != n + 2:
        ctx.fail(f"{ctx.op.name} expects a rank-{n + 2} input {LAYOUT[n]}, got rank {x.rank} {format_shape(x.shape)}",
                 "add a batch dim, or reshape/permute the input to channels-first")
    ctx.need_float(x)
    return x


def channels(ctx: InferCtx, axis: int = 1, param: str | None = "in_channels") -> int:
    """The input's channel count (must be concrete), checked against the optional ``in_channels`` param."""
    x = ctx.x
    c = x.shape[axis]
    if not isinstance(c, int):
        ctx.fail(f"the channel dim (dim {axis}) of the input {format_shape(x.shape)} must be a concrete size, got '{c}'",
                 "declare the channel dim of the graph input as an integer")
    if c < 1:  # torch builds a [out, 0, k] weight and then fails at run time
        ctx.fail(f"the input {format_shape(x.shape)} has no channels (dim {axis} is {c})", "give it at least one channel")
    given = ctx.params.get(param) if param else None
    if given is not None and given != c:
        ctx.fail(f"in_channels is {given} but the input {format_shape(x.shape)} has {c} channels",
                 "remove in_channels (it is inferred from the input) or fix it", param)
    return c


def window_out(ctx: InferCtx, size: Dim, kernel: int, stride: int, pad: int, dilation: int, axis: str,
               ceil_mode: bool = False, param: str = "kernel") -> Dim:
    """Output length of a sliding window with ``pad`` zeros on each side (PyTorch's rule, ceil_mode included).

    Fails, naming the input size, kernel and stride, when the output would be empty.
    """
    out = conv_out(size, kernel, stride, 2 * pad + (stride - 1 if ceil_mode else 0), dilation)
    if ceil_mode and isinstance(out, int) and isinstance(size, int) and (out - 1) * stride >= size + pad:
        out -= 1  # the last window must start inside the input or its left padding (torch)
    if isinstance(out, int) and out <= 0:
        ctx.fail(f"output {axis} would be {out}: input size {size}, kernel {kernel}, stride {stride}, "
                 f"padding {pad}, dilation {dilation}",
                 "use a smaller kernel or stride, more padding, or a larger input", param)
    return out


def _padding_check(value: Any) -> list[tuple[str, str]]:
    if value in ("same", "valid"):
        return []
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return []
    if (isinstance(value, list) and value
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)):
        return []
    return [("", f'expected a non-negative integer, a list of them (one per spatial dim), "same" or "valid"; got {value!r}')]


PADDING = Param("custom", 'zero padding on each side: an int, one int per spatial dim, "same" (stride 1 only) or "valid" (= 0)',
                0, schema={"anyOf": [{"type": "integer", "minimum": 0},
                                     {"type": "array", "items": {"type": "integer", "minimum": 0}},
                                     {"enum": ["same", "valid"]}]},
                check=_padding_check)


def _conv_params() -> dict[str, Param]:
    return {
        "out": p_int("output channels (out_channels)"),
        "kernel": p_ints("kernel size: an int or one per spatial dim"),
        "stride": p_ints("stride: an int or one per spatial dim", 1),
        "padding": PADDING,
        "dilation": p_ints("spacing between kernel taps", 1),
        "groups": p_int("blocked connections: in and out channels are split into this many groups", 1),
        "bias": p_bool("add a learnable bias per output channel", True),
        "in_channels": p_int("input channels; inferred from the input, checked when given", None),
    }


def _groups(ctx: InferCtx, c_in: int, c_out: int) -> int:
    g = ctx.params["groups"]
    for what, c in (("input", c_in), ("output", c_out)):
        if c % g:
            ctx.fail(f"groups {g} must divide the {what} channels: {c} is not divisible by {g}",
                     f"choose groups dividing both {c_in} (in) and {c_out} (out)", "groups")
    return g


def _conv(ctx: InferCtx, n: int) -> TensorType:
    x = spatial_input(ctx, n)
    c_in, c_out = channels(ctx), ctx.params["out"]
    _groups(ctx, c_in, c_out)
    k = as_tuple(ctx.params["kernel"], n, ctx, "kernel")
    s = as_tuple(ctx.params["stride"], n, ctx, "stride")
    d = as_tuple(ctx.params["dilation"], n, ctx, "dilation")
    padding = ctx.params["padding"]
    if padding == "same":
        if any(si != 1 for si in s):
            ctx.fail(f'padding "same" is not supported for strided convolutions (stride {ctx.params["stride"]})',
                     "use stride 1, or give the padding as numbers", "padding")
        spatial = x.shape[2:]
    else:
        p = (0,) * n if padding == "valid" else as_tuple(padding, n, ctx, "padding")
        spatial = tuple(window_out(ctx, x.shape[2 + i], k[i], s[i], p[i], d[i], AXES[n][i]) for i in range(n))
    return TensorType((x.shape[0], c_out) + tuple(spatial), x.dtype)


def _conv_count(n: int):
    def count(ctx: InferCtx) -> int:
        c_in, c_out, g = ctx.x.shape[1], ctx.params["out"], ctx.params["groups"]
        return c_out * (c_in // g) * math.prod(as_tuple(ctx.params["kernel"], n, ctx, "kernel")) + (c_out if ctx.params["bias"] else 0)
    return count


def _conv_flops(c: CostCtx) -> int:
    """2·N·out·(C_in/groups)·Πk·Πspatial_out (torch's conv count; the bias add is not counted)."""
    c_in, n = c.x[1], len(c.x) - 2
    k = c.params["kernel"]
    k = k if isinstance(k, (list, tuple)) else [k] * n
    return 2 * c.out[0] * c.out[1] * (c_in // c.params["groups"]) * math.prod(k) * math.prod(c.out[2:])


@op("conv1d", family="conv", params=_conv_params(), count=_conv_count(1), flops=_conv_flops,
    example={"in": "x", "out": 64, "kernel": 3, "padding": "same"},
    shape_hint="conv1d takes [batch, channels, length]")
def conv1d(ctx: InferCtx) -> TensorType:
    """1-D convolution over [batch, C_in, L] -> [batch, out, L_out] (seed 002, "The Convolution Operation").

    L_out = floor((L + 2p − d(k−1) − 1)/s) + 1; padding "same" keeps L (stride 1 only).
    params: weight [out, C_in/groups, k], bias [out] — count out·(C_in/groups)·k + out.
    """
    return _conv(ctx, 1)


@op("conv2d", family="conv", params=_conv_params(), count=_conv_count(2), flops=_conv_flops,
    example={"in": "image", "out": 64, "kernel": 3, "stride": 1, "padding": 1},
    shape_hint="conv2d takes [batch, channels, height, width]")
def conv2d(ctx: InferCtx) -> TensorType:
    """2-D convolution over [batch, C_in, H, W] -> [batch, out, H_out, W_out] (seed 002, "The Convolution Operation").

    S(i, j) = Σ_m Σ_n I(i+m, j+n)·F(m, n) per output channel, summed over the input channels of its group;
    H_out = floor((H + 2p − d(k−1) − 1)/s) + 1 (likewise W); padding "same" keeps H, W (stride 1 only).
    params: weight [out, C_in/groups, kh, kw], bias [out] — count out·(C_in/groups)·kh·kw + out
    (64 filters 3×3 on RGB: 1,792, seed 002).
    """
    return _conv(ctx, 2)


def _conv_t_count(ctx: InferCtx) -> int:
    c_in, c_out, g = ctx.x.shape[1], ctx.params["out"], ctx.params["groups"]
    return c_in * (c_out // g) * math.prod(as_tuple(ctx.params["kernel"], 2, ctx, "kernel")) + (c_out if ctx.params["bias"] else 0)


def _conv_t_flops(c: CostCtx) -> int:
    """2·N·C_in·(out/groups)·Πk·Πspatial_in: a transposed conv scatters every input position (torch's count)."""
    k = c.params["kernel"]
    k = k if isinstance(k, (list, tuple)) else [k] * 2
    return 2 * c.x[0] * c.x[1] * (c.params["out"] // c.params["groups"]) * math.prod(k) * math.prod(c.x[2:])


@op("conv_transpose2d", family="conv", params={
    "out": p_int("output channels (out_channels)"),
    "kernel": p_ints("kernel size: an int or [kh, kw]"),
    "stride": p_ints("stride (the upsampling factor)", 1),
    "padding": p_ints("implicit padding removed from each side of the output: d(k−1) − p", 0, min=0),
    "output_padding": p_ints("extra size added to one side of the output; must be < stride or < dilation", 0, min=0),
    "dilation": p_ints("spacing between kernel taps", 1),
    "groups": p_int("blocked connections between input and output channels", 1),
    "bias": p_bool("add a learnable bias per output channel", True),
    "in_channels": p_int("input channels; inferred from the input, checked when given", None),
}, count=_conv_t_count, flops=lambda c: _conv_t_flops(c), example={"in": "x", "out": 64, "kernel": 2, "stride": 2},
    shape_hint="conv_transpose2d takes [batch, channels, height, width]")
def conv_transpose2d(ctx: InferCtx) -> TensorType:
    """Transposed 2-D convolution (the gradient of conv2d), used to upsample in decoders and U-Nets (seed 002, "The Convolution Operation").

    H_out = (H−1)s − 2p + d(k−1) + output_padding + 1 (likewise W).
    params: weight [C_in, out/groups, kh, kw], bias [out] — count C_in·(out/groups)·kh·kw + out.
    """
    x = spatial_input(ctx, 2)
    c_in, c_out = channels(ctx), ctx.params["out"]
    _groups(ctx, c_in, c_out)
    k, s, p, op_, d = (as_tuple(ctx.params[name], 2, ctx, name)
                       for name in ("kernel", "stride", "padding", "output_padding", "dilation"))
    spatial = []
    for i, axis in enumerate(AXES[2]):
        if op_[i] >= s[i] and op_[i] >= d[i]:
            ctx.fail(f"output_padding {op_[i]} ({axis}) must be smaller than the stride ({s[i]}) or the dilation ({d[i]})",
                     "output_padding only resolves the ambiguity of strided outputs", "output_padding")
        size = conv_transpose_out(x.shape[2 + i], k[i], s[i], p[i], op_[i], d[i])
        if isinstance(size, int) and size <= 0:
            ctx.fail(f"output {axis} would be {size}: input size {x.shape[2 + i]}, kernel {k[i]}, stride {s[i]}, padding {p[i]}",
                     "use less padding", "padding")
        spatial.append(size)
    return TensorType((x.shape[0], c_out) + tuple(spatial), x.dtype)


def _scale_check(value: Any) -> list[tuple[str, str]]:
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in items):
        return [("", f"expected a positive number or one per spatial dim, got {value!r}")]
    return []


def _scaled(size: Dim, factor: float) -> Dim:
    if isinstance(size, int):
        return int(math.floor(size * factor))
    if float(factor).is_integer():
        return dim_mul(size, int(factor))
    return f"floor({size}*{factor})"


@op("upsample", family="conv", params={
    "mode": p_enum("interpolation", ("nearest", "bilinear"), "nearest"),
    "scale_factor": Param("custom", "multiplier for each spatial size (a number, or one per spatial dim)", None,
                          schema={"anyOf": [{"type": "number", "exclusiveMinimum": 0},
                                            {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0}}]},
                          check=_scale_check),
    "size": p_ints("output spatial size instead of a scale factor", None),
    "align_corners": p_bool("bilinear only: align the corner pixels of input and output", False),
}, example={"in": "x", "scale_factor": 2, "mode": "nearest"},
    shape_hint="upsample takes [batch, channels, length] (nearest) or [batch, channels, height, width]")
def upsample(ctx: InferCtx) -> TensorType:
    """Resize the spatial dims by nearest-neighbour or bilinear interpolation (the U-Net decoder's upsampling, seed 002 "Denoising Diffusion Probabilistic Models").

    out size = floor(size · scale_factor), or the given ``size``. No learnable parameters.
    """
    x = ctx.x
    if x.rank not in (3, 4):
        ctx.fail(f"upsample expects [batch, channels, length] or [batch, channels, height, width], got rank {x.rank} {format_shape(x.shape)}",
                 ctx.op.shape_hint)
    ctx.need_float(x)
    n, mode = x.rank - 2, ctx.params["mode"]
    if mode == "bilinear" and n != 2:
        ctx.fail(f"bilinear upsampling needs a rank-4 input [batch, channels, height, width], got {format_shape(x.shape)}",
                 "use mode: nearest for 1-D inputs", "mode")
    if ctx.params["align_corners"] and mode == "nearest":
        ctx.fail("align_corners only applies to bilinear upsampling", "remove it, or use mode: bilinear", "align_corners")
    scale, size = ctx.params["scale_factor"], ctx.params["size"]
    if (scale is None) == (size is None):
        ctx.fail("give exactly one of scale_factor and size", "e.g. scale_factor: 2", "size" if size is not None else None)
    if size is not None:
        spatial = as_tuple(size, n, ctx, "size")
    else:
        factors = scale if isinstance(scale, list) else [scale] * n
        if len(factors) != n:
            ctx.fail(f"scale_factor needs {n} values (one per spatial dim), got {len(factors)}", None, "scale_factor")
        spatial = tuple(_scaled(x.shape[2 + i], f) for i, f in enumerate(factors))
        for i, dim in enumerate(spatial):
            if isinstance(dim, int) and dim < 1:
                ctx.fail(f"output {AXES[n][i]} would be {dim}: input size {x.shape[2 + i]}, scale_factor {factors[i]}",
                         None, "scale_factor")
    return TensorType(x.shape[:2] + tuple(spatial), x.dtype)


def _patch_flops(c: CostCtx) -> int:
    """2·N·D·C·ph·pw per patch: a conv with kernel = stride = patch over (H/ph)(W/pw) patches."""
    p = c.params["patch"]
    ph, pw = p if isinstance(p, (list, tuple)) else (p, p)
    patches = (c.x[2] // ph) * (c.x[3] // pw)
    return 2 * c.x[0] * patches * c.params["dim"] * c.x[1] * ph * pw


def _patch_count(ctx: InferCtx) -> int:
    c, dim = ctx.x.shape[1], ctx.params["dim"]
    ph, pw = as_tuple(ctx.params["patch"], 2, ctx, "patch")
    return dim * c * ph * pw + (dim if ctx.params["bias"] else 0) + (dim if ctx.params["cls_token"] else 0)


@op("patch_embed", family="conv", params={
    "patch": p_ints("patch size (kernel = stride): an int or [ph, pw]"),
    "dim": p_int("embedding width D"),
    "cls_token": p_bool("prepend a learnable [CLS] token, giving N+1 tokens", False),
    "bias": p_bool("bias of the patch projection", True),
    "in_channels": p_int("input channels; inferred from the input, checked when given", None),
}, count=_patch_count, flops=lambda c: _patch_flops(c), example={"in": "image", "patch": 16, "dim": 768, "cls_token": True},
    shape_hint="patch_embed takes [batch, channels, height, width]")
def patch_embed(ctx: InferCtx) -> TensorType:
    """ViT patch embedding: [batch, C, H, W] -> [batch, N, D], N = (H/p)(W/p), +1 with the [CLS] token (seed 002, "Vision Transformers").

    Each non-overlapping p×p patch is linearly projected to D dims (a conv with kernel = stride = p), the
    grid is flattened row-major into a sequence, and a learnable [CLS] token is prepended when cls_token is set.
    params: weight [D, C, ph, pw], bias [D], cls [1, 1, D] — count D·C·ph·pw + D (+ D).
    """
    x = spatial_input(ctx, 2)
    channels(ctx)
    patch = as_tuple(ctx.params["patch"], 2, ctx, "patch")
    grid = []
    for i, axis in enumerate(AXES[2]):
        size = x.shape[2 + i]
        if isinstance(size, int) and size % patch[i]:
            ctx.fail(f"input {axis} {size} is not divisible by the patch size {patch[i]}",
                     "resize the input, or choose a patch size that divides it", "patch")
        grid.append(dim_floordiv(size, patch[i]))
        doubt_size(grid[-1])  # the patch must fit: a p x p conv needs the input to be at least p
    n = dim_mul(grid[0], grid[1])
    if ctx.params["cls_token"]:
        n = dim_add(n, 1)
    return TensorType((x.shape[0], n, ctx.params["dim"]), x.dtype)
