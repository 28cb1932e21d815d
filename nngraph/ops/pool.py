"""Pooling: max/avg pooling (1-D, 2-D), adaptive pooling, global pooling over the spatial dims.

Formulas: seed 002 "Pooling, Hierarchical Representation, and Normalization" — max pooling keeps
the maximum of each window, average pooling its mean — and seed 000 "Convolutional Neural
Networks (CNNs)" (pooling downsamples the feature maps). Output sizes follow PyTorch:
L_out = floor((L + 2p − d(k−1) − 1)/s) + 1, with ceil instead of floor under ceil_mode (a last
window that would start in the right padding is dropped). Inputs are channels-first. No
learnable parameters.
"""

from __future__ import annotations

from ..registry import InferCtx, op, p_bool, p_ints
from ..types import TensorType, format_shape
from ._shapes import as_tuple
from .conv import AXES, spatial_input, window_out


def _window_params(max_pool: bool) -> dict:
    params = {
        "kernel": p_ints("window size: an int or one per spatial dim"),
        "stride": p_ints("window step (default: the kernel size)", None),
        "padding": p_ints("implicit padding on each side (at most half the kernel)", 0, min=0),
    }
    if max_pool:
        params["dilation"] = p_ints("spacing between window taps", 1)
    params["ceil_mode"] = p_bool("round the output size up instead of down", False)
    if not max_pool:
        params["count_include_pad"] = p_bool("count the zero padding in the average's denominator", True)
    return params


def _pool(ctx: InferCtx, n: int) -> TensorType:
    x = spatial_input(ctx, n)
    k = as_tuple(ctx.params["kernel"], n, ctx, "kernel")
    stride = ctx.params["stride"]
    s = k if stride is None else as_tuple(stride, n, ctx, "stride")
    p = as_tuple(ctx.params["padding"], n, ctx, "padding")
    d = as_tuple(ctx.params.get("dilation", 1), n, ctx, "dilation")
    for i in range(n):
        if p[i] > k[i] // 2:
            ctx.fail(f"padding {p[i]} is more than half the kernel size {k[i]}",
                     "padding must be at most kernel // 2 (as in torch)", "padding")
    spatial = tuple(window_out(ctx, x.shape[2 + i], k[i], s[i], p[i], d[i], AXES[n][i], ctx.params["ceil_mode"])
                    for i in range(n))
    return TensorType(x.shape[:2] + spatial, x.dtype)


def _register_window_pool(name: str, n: int, max_pool: bool) -> None:
    what = "maximum" if max_pool else "average"
    layout = "[batch, C, L]" if n == 1 else "[batch, C, H, W]"

    def rule(ctx: InferCtx) -> TensorType:
        return _pool(ctx, n)

    rule.__doc__ = (f"{n}-D {what} pooling over {layout}: each output is the {what} of a kernel-sized window "
                    f"(seed 002, \"Pooling, Hierarchical Representation, and Normalization\").\n\n"
                    f"L_out = floor((L + 2p − d(k−1) − 1)/s) + 1 per spatial dim (ceil under ceil_mode); stride defaults "
                    f"to the kernel. No learnable parameters.")
    op(name, family="pool", params=_window_params(max_pool),
       example={"in": "x", "kernel": 2} if n == 2 else {"in": "x", "kernel": 3, "stride": 2, "padding": 1},
       shape_hint=f"{name} takes {layout}")(rule)


for _name, _n, _max in (("max_pool1d", 1, True), ("max_pool2d", 2, True), ("avg_pool1d", 1, False), ("avg_pool2d", 2, False)):
    _register_window_pool(_name, _n, _max)


def _register_adaptive(name: str, n: int, what: str) -> None:
    layout = "[batch, C, L]" if n == 1 else "[batch, C, H, W]"

    def rule(ctx: InferCtx) -> TensorType:
        x = spatial_input(ctx, n)
        size = as_tuple(ctx.params["output_size"], n, ctx, "output_size")
        return TensorType(x.shape[:2] + size, x.dtype)

    rule.__doc__ = (f"Adaptive {n}-D {what} pooling {layout} -> [batch, C, *output_size]: output cell i covers input "
                    f"positions floor(i·L/out) .. ceil((i+1)·L/out) (seed 002, \"Pooling, Hierarchical Representation, "
                    f"and Normalization\"). No learnable parameters.")
    op(name, family="pool", params={"output_size": p_ints("output spatial size: an int or one per spatial dim")},
       example={"in": "x", "output_size": 1}, shape_hint=f"{name} takes {layout}")(rule)


for _name, _n, _what in (("adaptive_avg_pool1d", 1, "average"), ("adaptive_avg_pool2d", 2, "average"),
                         ("adaptive_max_pool2d", 2, "max")):
    _register_adaptive(_name, _n, _what)


def _register_global(name: str, what: str) -> None:
    def rule(ctx: InferCtx) -> TensorType:
        x = ctx.x
        if x.rank < 3:
            ctx.fail(f"{name} expects [batch, channels, *spatial] (rank 3 or more), got rank {x.rank} {format_shape(x.shape)}",
                     "the input needs at least one spatial dim after the channels")
        ctx.need_float(x)
        spatial = (1,) * (x.rank - 2) if ctx.params["keepdim"] else ()
        return TensorType(x.shape[:2] + spatial, x.dtype)

    rule.__doc__ = (f"Global {what} pooling: [batch, C, *spatial] -> [batch, C] (or [batch, C, 1, ...] with keepdim), "
                    f"the {what} over all spatial positions of each channel (seed 002, \"Pooling, Hierarchical "
                    f"Representation, and Normalization\"). No learnable parameters.")
    op(name, family="pool", params={"keepdim": p_bool("keep the spatial dims with size 1", False)},
       example={"in": "features"})(rule)


_register_global("global_avg_pool", "average")
_register_global("global_max_pool", "maximum")
