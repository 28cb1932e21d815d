"""Efficient attention variants: linear (elu+1 kernel), Performer (FAVOR+), Linformer projections.

All three keep the multi-head projection layout of ``attention`` (``q``/``k``/``v``/``out`` or
fused ``qkv``; see :mod:`nngraph.attention.layout`) and map x [B, T, D] to [B, T, D].
"""

from __future__ import annotations

import math

from ..registry import InferCtx, op, p_bool, p_float, p_int
from ..types import TensorType
from ..attention.layout import head_layout, model_dim, projection_count, projection_params


def _self_attention(ctx: InferCtx) -> tuple[int, int, int, int]:
    d_model = model_dim(ctx, ctx.x, "x")
    heads, kv, head_dim = head_layout(ctx, d_model)
    return d_model, heads, kv, head_dim


def _count(ctx: InferCtx) -> int:
    d_model, heads, kv, head_dim = _self_attention(ctx)
    return projection_count(d_model, d_model, heads, kv, head_dim, ctx.params)


def elu_feature(x: float) -> float:
    """φ(x) = elu(x) + 1 > 0 (Katharopoulos et al. 2020)."""
    return x + 1.0 if x > 0 else math.exp(x)


@op("linear_attention", family="attention", params={
    **projection_params(kv_heads=False, dropout=False),
    "causal": p_bool("causal (RNN) form: S_i = S_{i-1} + φ(k_i) v_iᵀ, z_i = z_{i-1} + φ(k_i)", False),
    "eps": p_float("added to the normalizer φ(q)ᵀz", 1e-6, min=0.0),
}, count=_count, example={"in": "h", "heads": 8, "causal": True})
def linear_attention(ctx: InferCtx) -> TensorType:
    """Linear attention with the feature map φ(x) = elu(x) + 1, O(T) in the sequence length.

    Katharopoulos et al. 2020 (seed 002, "Katharopoulos Linear Attention and Autoregressive
    Reformulation"): out_i = φ(q_i)ᵀ S / φ(q_i)ᵀ z with
    S = Σ_j φ(k_j) v_jᵀ, z = Σ_j φ(k_j); causal sums run over j <= i (an RNN with state S).
    O(T·d²) instead of O(T²·d). Params as ``attention`` with ``qkv``: ``q``/``k``/``v``/``out``
    (or ``qkv``) weights and biases; no others.
    """
    _self_attention(ctx)
    return ctx.x


def performer_features(head_dim: int) -> int:
    """Performer's default number of random features: ⌊d·ln d⌋ (Choromanski et al. 2021)."""
    return max(1, int(head_dim * math.log(head_dim)))


@op("performer_attention", family="attention", params={
    **projection_params(kv_heads=False, dropout=False),
    "num_features": p_int("random features m (default ⌊head_dim·ln head_dim⌋)", None),
    "seed": p_int("seed of the orthogonal random projection (a buffer, not learned)", 0, min=0),
    "causal": p_bool("causal prefix-sum form", False),
}, count=_count, example={"in": "h", "heads": 8, "num_features": 256})
def performer_attention(ctx: InferCtx) -> TensorType:
    """Performer attention: softmax approximated by positive orthogonal random features (FAVOR+).

    Choromanski et al. 2021 (seed 002, "Routing-Based Approaches: Reformer and Performer"; seed 000, "Different Types of Transformers": softmax(QKᵀ) ≈ φ(Q)φ(K)ᵀ) with positive
    random features φ(x) = exp(ωᵢᵀx' − |x'|²/2)/√m, x' = x/d^{1/4}, ω drawn orthogonally from ``seed``
    (a non-learned buffer [H, m, d]); out = φ(Q)(φ(K)ᵀV) / φ(Q)(φ(K)ᵀ1). Params as ``attention``.
    """
    _self_attention(ctx)
    return ctx.x


def _linformer_count(ctx: InferCtx) -> int:
    n = ctx.params["max_len"] * ctx.params["k"]
    return _count(ctx) + (n if ctx.params["share_kv"] else 2 * n)


@op("linformer_attention", family="attention", params={
    **projection_params(kv_heads=False),
    "k": p_int("projected length k of keys and values"),
    "max_len": p_int("sequence length n the projections E, F [n, k] are built for (inputs may be shorter)"),
    "share_kv": p_bool("one projection for keys and values (E = F)", False),
}, count=_linformer_count, example={"in": "h", "heads": 8, "k": 256, "max_len": 4096})
def linformer_attention(ctx: InferCtx) -> TensorType:
    """Linformer attention: keys and values projected along the sequence to k positions, O(n·k).

    Wang et al. 2020 (seed 000, "Different Types of Transformers"): K' = EᵀK, V' = FᵀV
    with learned E, F ∈ R^{n×k}, out = softmax(Q K'ᵀ/√d) V' — O(n·k). Params: projections as
    ``attention`` plus ``proj_k [max_len, k]`` and ``proj_v [max_len, k]`` (one, ``proj_k``, with
    share_kv), shared by all heads; an input of length T < n uses the first T rows.
    """
    _self_attention(ctx)
    k, n = ctx.params["k"], ctx.params["max_len"]
    if k > n:
        ctx.fail(f"k {k} must not exceed max_len {n} (it is a projection to fewer positions)", None, "k")
    seq = ctx.x.shape[1]
    if isinstance(seq, int) and seq > n:
        ctx.fail(f"sequence length {seq} exceeds max_len {n}", "raise max_len to the longest input", "max_len")
    return ctx.x
