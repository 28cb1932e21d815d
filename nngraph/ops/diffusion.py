"""Denoising diffusion: forward noising q(x_t | x_0), the timestep embedding and the U-Net residual block.

Formulas: seed 000 "Diffusion Models" — the forward Markov chain q(x_t | x_{t-1}) = N(√(1−β_t) x_{t-1}, β_t I)
and a U-Net trained to reverse it; seed 002 "Denoising Diffusion Probabilistic Models" (the network
takes the noisy image and the step t and predicts the noise) and "Latent Diffusion Models and
Cross-Attention Conditioning". A U-Net is written in a spec from these ops plus conv2d, group_norm,
silu, pooling/upsample, concat (skips) and ``attention`` on [B, H·W, C] (see specs/ddpm_unet.yaml).
"""

from __future__ import annotations

from ..registry import InferCtx, op, p_bool, p_enum, p_float, p_int
from ..cost.rules import CostCtx, dense
from ..types import TensorType, dims_differ, format_shape, is_float, is_int


# ----- forward noising ---------------------------------------------------
@op("diffusion_noise", family="diffusion", inputs=("x0", "t", "noise"), params={
    "schedule": p_enum("β schedule: linear (Ho et al.) or cosine (Nichol & Dhariwal)", ("linear", "cosine"), "linear"),
    "steps": p_int("number of diffusion steps T", 1000),
    "beta_start": p_float("β_1 of the linear schedule", 1e-4, min=0.0, max=1.0),
    "beta_end": p_float("β_T of the linear schedule", 0.02, min=0.0, max=1.0),
    "cosine_s": p_float("offset s of the cosine schedule", 0.008, min=0.0),
}, example={"in": ["x0", "t", "noise"], "schedule": "linear", "steps": 1000},
    shape_hint="diffusion_noise takes x0 [batch, ...], t [batch] (int64 steps) and noise shaped like x0")
def diffusion_noise(ctx: InferCtx) -> TensorType:
    """Forward noising x_t = √ᾱ_t · x_0 + √(1 − ᾱ_t) · ε, ᾱ_t = Π_{s≤t} (1 − β_s) (seed 000 "Diffusion Models"; seed 002 "Denoising Diffusion Probabilistic Models").

    The closed form of T applications of q(x_t | x_{t-1}) = N(√(1−β_t) x_{t-1}, β_t I). Schedules:
    linear β_t from beta_start to beta_end over ``steps``; cosine ᾱ_t = f(t)/f(0) with
    f(t) = cos²(((t/T) + s)/(1 + s) · π/2), β clipped at 0.999. t holds 0-based step indices.
    x0 [B, ...], t [B] (integer), noise [B, ...] (same shape as x0) -> x_t (shape of x0). No learnable parameters.
    """
    x0, t, noise = ctx.inputs["x0"], ctx.inputs["t"], ctx.inputs["noise"]
    ctx.need_min_rank(x0, 1, "x0")
    if not is_float(x0.dtype):
        ctx.fail(f"x0 must be a floating-point tensor, got {x0.dtype}", None, "x0")
    if not is_int(t.dtype):
        ctx.fail(f"t must be an integer tensor of step indices, got {t.dtype}",
                 "declare t with dtype: int64 (steps 0..steps-1)", "t")
    if t.rank != 1:
        ctx.fail(f"t must be [batch] (one step per sample), got {format_shape(t.shape)}", None, "t")
    if dims_differ(t.shape[0], x0.shape[0]):
        ctx.fail(f"t must have one step per sample: expected [{x0.shape[0]}], got {format_shape(t.shape)}", None, "t")
    if noise.rank != x0.rank or any(dims_differ(a, b) for a, b in zip(noise.shape, x0.shape)):
        ctx.fail(f"noise must have the shape of x0: expected {format_shape(x0.shape)}, got {format_shape(noise.shape)}",
                 "sample ε ~ N(0, I) with the shape of the clean input", "noise")
    if noise.dtype != x0.dtype:
        ctx.fail(f"noise must have the dtype of x0: expected {x0.dtype}, got {noise.dtype}", None, "noise")
    p = ctx.params
    if p["schedule"] == "linear" and p["beta_start"] >= p["beta_end"]:
        ctx.fail(f"beta_start must be below beta_end: expected < {p['beta_end']}, got {p['beta_start']}", None, "beta_start")
    return x0


# ----- timestep embedding ------------------------------------------------
def _temb_flops(c: CostCtx) -> int:
    """The MLP on the sinusoid: 2·B·(dim·out + out·out); 0 without it."""
    b, out = c.x[0], c.params["out"]
    return 0 if out is None else dense(b, c.params["dim"], out) + dense(b, out, out)


def _temb_backward(c: CostCtx) -> int:
    """2·forward (each linear's weight and input gradients), less the first linear's input gradient when the
    timesteps need none (the sinusoid of data is data)."""
    b, out = c.x[0], c.params["out"]
    return 0 if out is None else 2 * c.forward - (0 if c.needs_grad() else dense(b, c.params["dim"], out))


def _temb_count(ctx: InferCtx) -> int:
    dim, out = ctx.params["dim"], ctx.params["out"]
    return 0 if out is None else dim * out + out + out * out + out


@op("timestep_embedding", family="diffusion", inputs=("t",), params={
    "dim": p_int("width of the sinusoidal embedding"),
    "out": p_int("width of the MLP linear_1 -> silu -> linear_2 on top (null: sinusoidal only, no parameters)", None),
    "max_period": p_float("longest wavelength (the 10000 of the Transformer encoding)", 10000.0, min=1.0),
    "flip_sin_to_cos": p_bool("order [cos, sin] instead of [sin, cos]", False),
    "freq_shift": p_float("frequencies exp(-ln(max_period)·i / (dim/2 − freq_shift)); the original DDPM uses 1", 0.0),
}, count=_temb_count, flops=lambda c: _temb_flops(c), backward=_temb_backward,
    kernels=lambda c: 12 if c.params["out"] else 8, products=2, example={"in": "t", "dim": 128, "out": 512},
    shape_hint="timestep_embedding takes t [batch] (integer or float steps)")
def timestep_embedding(ctx: InferCtx) -> TensorType:
    """Sinusoidal step embedding e(t)_i = sin(t·ω_i), e(t)_{i+dim/2} = cos(t·ω_i), ω_i = max_period^{-i/(dim/2 − shift)}, optionally followed by an MLP.

    The Transformer's sinusoidal position encoding applied to the diffusion step (seed 002, "Denoising
    Diffusion Probabilistic Models": the network takes the step t as input; positional encodings section
    for the sinusoid). An odd ``dim`` is zero-padded by one. t [B] -> [B, dim], or [B, out] with the MLP.
    params (diffusers ``TimestepEmbedding``): linear_1.weight [out, dim], linear_1.bias [out],
    linear_2.weight [out, out], linear_2.bias [out].
    """
    t = ctx.x
    if t.rank != 1:
        ctx.fail(f"t must be [batch] (one step per sample), got {format_shape(t.shape)}", ctx.op.shape_hint, "t")
    if t.dtype == "bool":
        ctx.fail("t must hold step numbers (integer or float), got bool", None, "t")
    width = ctx.params["out"] or ctx.params["dim"]
    return TensorType((t.shape[0], width), "float32")


# ----- U-Net residual block ----------------------------------------------
def _res_channels(ctx: InferCtx) -> tuple[int, int]:
    x = ctx.inputs["x"]
    c = x.shape[1]
    return c, ctx.params["out"] or c


def _res_flops(c: CostCtx) -> int:
    """Two 3×3 convs 2·B·HW·9·(C·out + out·out), the step projection 2·B·D_t·width, a 1×1 skip 2·B·HW·C·out."""
    b, ch, h, w = c.inputs["x"]
    out = c.params["out"] or ch
    total = 2 * b * h * w * 9 * (ch * out + out * out) + (2 * b * h * w * ch * out if ch != out else 0)
    temb = c.inputs.get("temb")
    if temb is not None:
        total += dense(b, temb[1], 2 * out if c.params["temb_mode"] == "scale_shift" else out)
    return total


def _res_count(ctx: InferCtx) -> int:
    c, out = _res_channels(ctx)
    temb = ctx.inputs.get("temb")
    n = 2 * c + (c * out * 9 + out)  # norm1, conv1
    if temb is not None:
        width = 2 * out if ctx.params["temb_mode"] == "scale_shift" else out
        n += temb.shape[1] * width + width  # time_emb_proj
    n += 2 * out + (out * out * 9 + out)  # norm2, conv2
    if c != out:
        n += c * out + out  # conv_shortcut (1x1)
    return n


@op("res_block", family="diffusion", inputs=("x", "temb?"), params={
    "out": p_int("output channels (default: input channels)", None),
    "groups": p_int("GroupNorm groups; must divide the input and output channels", 32),
    "eps": p_float("GroupNorm ε", 1e-5, min=0.0),
    "dropout": p_float("dropout before the second conv", 0.0, min=0.0, max=1.0),
    "temb_mode": p_enum("how the step embedding enters: add a per-channel bias, or scale_shift (FiLM: h·(1+s)+b)",
                        ("add", "scale_shift"), "add"),
}, count=_res_count, flops=lambda c: _res_flops(c),
    kernels=lambda c: 10 + (c.inputs["x"][1] != (c.params["out"] or c.inputs["x"][1])), products=3,
    curve="conv", example={"in": {"x": "h", "temb": "temb"}, "out": 128, "groups": 32},
    shape_hint="res_block takes x [batch, C, H, W] and optionally temb [batch, D_t]")
def res_block(ctx: InferCtx) -> TensorType:
    """U-Net residual block with step conditioning (seed 000 "Diffusion Models": the U-Net denoiser; seed 002 DDPM).

    h = conv1(silu(norm1(x))); h = h + time_emb_proj(silu(temb))[:, :, None, None] (add) or
    h = norm2(h)·(1 + s) + b with [s, b] = time_emb_proj(silu(temb)) (scale_shift);
    h = conv2(dropout(silu(norm2(h)))); out = skip(x) + h, where skip is a 1×1 conv when channels change.
    x [B, C, H, W], temb [B, D_t] -> [B, out, H, W].
    params (diffusers ``ResnetBlock2D``): norm1.weight/bias [C], conv1.weight [out, C, 3, 3], conv1.bias [out],
    time_emb_proj.weight [out (2·out for scale_shift), D_t] + bias (with temb), norm2.weight/bias [out],
    conv2.weight [out, out, 3, 3], conv2.bias [out], conv_shortcut.weight [out, C, 1, 1] + bias [out] (when C ≠ out).
    """
    x = ctx.inputs["x"]
    if x.rank != 4:
        ctx.fail(f"x must be [batch, channels, height, width], got {format_shape(x.shape)}", ctx.op.shape_hint)
    ctx.need_float(x, "x")
    c = x.shape[1]
    if not isinstance(c, int):
        ctx.fail(f"the channel dim of x must be a concrete size, got '{c}'", "declare channels as an integer")
    c, out = _res_channels(ctx)
    g = ctx.params["groups"]
    for what, n in (("input", c), ("output", out)):
        if n % g:
            ctx.fail(f"groups must divide the {what} channels: {n} is not divisible by {g}",
                     f"choose groups dividing both {c} and {out}", "groups")
    temb = ctx.inputs.get("temb")
    if temb is not None:
        if temb.rank != 2:
            ctx.fail(f"temb must be [batch, D_t], got {format_shape(temb.shape)}", "feed it from timestep_embedding", "temb")
        ctx.need_float(temb, "temb")
        if dims_differ(temb.shape[0], x.shape[0]):
            ctx.fail(f"temb batch must match x: expected {x.shape[0]}, got {temb.shape[0]}", None, "temb")
        if not isinstance(temb.shape[1], int):
            ctx.fail(f"the width of temb must be a concrete size, got '{temb.shape[1]}'", None, "temb")
    elif ctx.params["temb_mode"] != "add":
        ctx.fail("temb_mode scale_shift needs a temb input", "connect in: {x: ..., temb: ...}", "temb_mode")
    return TensorType((x.shape[0], out) + x.shape[2:], x.dtype)
