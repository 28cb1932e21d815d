"""Shared pieces of the attention ops: the Q/K/V/output projection parameters, checks and counts.

Parameter layout (names the torch back end uses; D = query width, Dc = key/value source width,
H = heads, G = kv_heads, d = head_dim):

- ``qkv: fused`` (self-attention only): ``qkv.weight [(H + 2G)·d, D]``, ``qkv.bias [(H + 2G)·d]``,
  rows ordered q | k | v (GPT-2 ``c_attn``; ``nn.MultiheadAttention.in_proj_weight`` when G = H);
- ``qkv: separate``: ``q.weight [H·d, D]``, ``k.weight [G·d, Dc]``, ``v.weight [G·d, Dc]`` (+ biases);
- ``out.weight [D, H·d]``, ``out.bias [D]``.
"""

from __future__ import annotations

from ..registry import InferCtx, Param, p_bool, p_enum, p_float, p_int
from ..types import FLOAT_DTYPES, TensorType, format_shape

QKV_DOC = "q/k/v projections: fused (one qkv matrix, self-attention) or separate (q, k, v)"


def projection_params(kv_heads: bool = True, dropout: bool = True) -> dict[str, Param]:
    """The projection parameters every attention op shares."""
    out: dict[str, Param] = {"heads": p_int("number of query heads H")}
    if kv_heads:
        out["kv_heads"] = p_int("key/value heads G (grouped-query; 1 = multi-query); must divide heads (default: heads)", None)
    out.update({
        "head_dim": p_int("width d of one head (default: d_model // heads)", None),
        "qkv": p_enum(QKV_DOC, ("separate", "fused"), "separate"),
        "bias": p_bool("biases on the q/k/v projections", True),
        "out_bias": p_bool("bias on the output projection", True),
    })
    if dropout:
        out["dropout"] = p_float("dropout on the attention weights", 0.0, min=0.0, max=1.0)
    return out


def model_dim(ctx: InferCtx, t: TensorType, what: str, param: str | None = None) -> int:
    """Check a [B, T, D] float input and return its concrete D (errors point at ``param``, an input name)."""
    if t.rank != 3:
        ctx.fail(f"{what} must be [batch, seq, features], got rank {t.rank} {format_shape(t.shape)}",
                 "attention works on [batch, seq, features]; reshape or flatten first", param)
    if t.dtype not in FLOAT_DTYPES:
        ctx.fail(f"{what} must be a floating-point tensor, got {t.dtype}",
                 "feed it through an embedding (for token ids) or cast it first", param)
    d = t.shape[-1]
    if not isinstance(d, int):
        ctx.fail(f"the feature dim of {what} must be a concrete size, got '{d}'",
                 "declare the feature dim as an integer", param)
    return d


def layout_of(params: dict, d_model: int) -> tuple[int, int, int]:
    """(H, G, d) of checked params: G = kv_heads or H, d = head_dim or D // H (the one place this is derived)."""
    heads = params["heads"]
    return heads, params.get("kv_heads") or heads, params.get("head_dim") or d_model // heads


def head_layout(ctx: InferCtx, d_model: int) -> tuple[int, int, int]:
    """(heads, kv_heads, head_dim), failing at the offending parameter."""
    p = ctx.params
    heads = p["heads"]
    kv = p.get("kv_heads") or heads
    if p.get("kv_heads") is not None and heads % kv:
        ctx.fail(f"heads {heads} is not divisible by kv_heads {kv}",
                 "each key/value head serves heads/kv_heads query heads; pick a divisor of heads "
                 f"({', '.join(str(g) for g in range(1, heads + 1) if heads % g == 0)})", "kv_heads")
    if kv > heads:
        ctx.fail(f"kv_heads {kv} exceeds heads {heads}", "use kv_heads <= heads", "kv_heads")
    if p.get("head_dim") is None and d_model % heads:
        ctx.fail(f"d_model {d_model} is not divisible by heads {heads}",
                 "choose heads dividing the input width, or give head_dim explicitly", "heads")
    return layout_of(p, d_model)


def projection_count(d_model: int, d_ctx: int, heads: int, kv: int, head_dim: int, params: dict) -> int:
    """Learnable parameters of the q/k/v/out projections, exactly as the torch layers hold them."""
    b = 1 if params["bias"] else 0
    q_rows, kv_rows = heads * head_dim, kv * head_dim
    n = q_rows * d_model + 2 * kv_rows * d_ctx + b * (q_rows + 2 * kv_rows)
    return n + d_model * q_rows + (d_model if params["out_bias"] else 0)
