"""Reformer attention: shared-QK attention restricted by locality-sensitive hashing (Kitaev et al. 2020).

Seed 002, "Routing-Based Approaches: Reformer and Performer": the Reformer "uses locality-sensitive
hashing (LSH) to dynamically route each query to the most similar keys, attending only where
attention weights would naturally be highest"; seed 000, "Different Types of Transformers" for the
masked form softmax(QKᵀ + M) with M_ij = −∞ on disallowed pairs.
"""

from __future__ import annotations

from ..registry import InferCtx, op, p_bool, p_int
from ..types import TensorType
from ..attention.layout import head_layout, model_dim


def _count(ctx: InferCtx) -> int:
    d_model = model_dim(ctx, ctx.x, "x")
    heads, _, head_dim = head_layout(ctx, d_model)
    p, rows = ctx.params, heads * head_dim
    b = rows if p["bias"] else 0
    return 2 * (rows * d_model + b) + d_model * rows + (d_model if p["out_bias"] else 0)


@op("lsh_attention", family="attention", params={
    "heads": p_int("number of heads H"),
    "head_dim": p_int("width d of one head (default: d_model // heads)", None),
    "bias": p_bool("biases on the shared qk and the v projections", True),
    "out_bias": p_bool("bias on the output projection", True),
    "n_buckets": p_int("hash buckets per round (even: the hash is argmax over [xR; −xR], R with n_buckets/2 columns)", 32, min=2),
    "n_hashes": p_int("hash rounds; a query attends within its bucket in each round, rounds combined by their softmax mass", 1),
    "chunk_size": p_int("length of the chunks of the bucket-sorted sequence; each chunk attends to itself and the previous one", 64),
    "same_bucket": p_bool("also require the key's bucket to equal the query's inside the chunk window (the LSH set P_i); "
                          "false: every key of the two chunks", True),
    "causal": p_bool("mask keys after the query (by original position)", False),
    "seed": p_int("seed of the random rotations R [n_hashes, H, d, n_buckets/2] (a buffer, not learned)", 0, min=0),
}, count=_count, example={"in": "h", "heads": 8, "n_buckets": 32, "n_hashes": 4, "chunk_size": 64},
    shape_hint="lsh_attention takes x [batch, seq, d_model]")
def lsh_attention(ctx: InferCtx) -> TensorType:
    """Reformer LSH self-attention with shared queries and keys: x [B, T, D] -> [B, T, D] (seed 002, "Routing-Based Approaches: Reformer and Performer").

    Shared QK: q = x W_qkᵀ, k_j = q_j / ‖q_j‖, v = x W_vᵀ (per head). Angular LSH per round r:
    h_r(x) = argmax([x R_r; −x R_r]) with a random rotation R_r [d, n_buckets/2] drawn from ``seed``.
    Positions are sorted by (bucket, position) per round and cut into chunks of ``chunk_size``; a query
    attends to the keys of its chunk and of the previous chunk (the first chunk: its own only),
    of its own bucket with ``same_bucket``, never later ones with ``causal``, and never itself unless no
    other key is left (its score is then −1e5 instead of −∞, Kitaev et al. 2020 §2 "shared-QK").
    scores = q·k/√d; the rounds' outputs o_r are combined as Σ_r softmax_r(logsumexp_r) o_r.
    params: qk.weight [H·d, D], v.weight [H·d, D] (+ qk.bias, v.bias [H·d]), out.weight [D, H·d] (+ out.bias [D]).
    """
    d_model = model_dim(ctx, ctx.x, "x")
    head_layout(ctx, d_model)
    if ctx.params["n_buckets"] % 2:
        ctx.fail(f"n_buckets must be even, got {ctx.params['n_buckets']}",
                 "the hash is argmax over [xR; −xR], so buckets come in pairs", "n_buckets")
    return ctx.x
