"""Position encodings inside attention as tensors (front end: nngraph/ops/_attn_positions.py).

* RoPE (``qk_transform``; Su et al. 2021, seed 002 "Rotary Positional Embeddings and Long-Context
  Extrapolation"): the first r = int(head_dim·fraction) dims of every query and key are rotated,
  the rest pass through (partial rotary, GPT-NeoX). Convention: **rotate-half** (GPT-NeoX / Hugging
  Face LLaMA): dim i is paired with dim i + r/2, both turning by angle m·θ_i, so
  ``rope(x, m) = x·cos(mθ) + rotate_half(x)·sin(mθ)`` with ``rotate_half([a, b]) = [-b, a]`` and
  cos/sin repeated over the two halves -- exactly ``transformers``' ``apply_rotary_pos_emb``, so
  LLaMA checkpoints load without permuting rows. θ_i = :func:`rope_inv_freq` (NTK / YaRN scaling
  included); YaRN also multiplies cos and sin by :func:`rope_attention_factor`.
* ALiBi (``score_bias``; Press et al. 2022): bias[h, i, j] = -m_h·|i - j|.
* T5 buckets (``score_bias``; Raffel et al. 2020): bias[h, i, j] = ``rel_bias.weight[bucket(j - i), h]``
  with :func:`t5_buckets`, the tensor form of ``t5_bucket`` (and of HF ``T5Attention._relative_position_bucket``).
* Shaw (``score_bias``; Shaw et al. 2018): scores[i, j] += q_i·rel_k[clip(j - i, -k, k) + k]·scale; with
  ``values: true`` the output adds Σ_j p_ij rel_v[clip(j - i, -k, k) + k].

Positions are absolute indices: queries ``offset .. offset + T - 1`` and keys ``0 .. S - 1`` (offset =
cached positions while decoding with a KV cache, else 0).
"""

from __future__ import annotations

import math

import torch

from nngraph.ops._attn_positions import alibi_slopes, rope_attention_factor, rope_inv_freq, rotary_dim


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """[a, b] -> [-b, a] over the last dim (the two halves of the rotated dims)."""
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


def rope_cos_sin(params: dict, head_dim: int, positions: torch.Tensor,
                 dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [..., T, r] for integer ``positions`` [..., T] (angles computed in float32 or better)."""
    inv = torch.tensor(rope_inv_freq(head_dim, params["base"], params["fraction"], params["scaling"], params["factor"],
                                     params["original_max_len"], params["beta_fast"], params["beta_slow"]),
                       dtype=torch.float64).to(torch.float64 if dtype == torch.float64 else torch.float32)
    inv = inv.to(positions.device)
    angles = positions.to(inv.dtype).unsqueeze(-1) * inv  # [..., T, r/2]
    emb = torch.cat((angles, angles), dim=-1)
    attn_factor = rope_attention_factor(params["scaling"], params["factor"])
    return (emb.cos() * attn_factor).to(dtype), (emb.sin() * attn_factor).to(dtype)


def apply_rope(x: torch.Tensor, params: dict, positions: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, H, T, d] at ``positions`` [T] (rotate-half convention; the first r dims only)."""
    head_dim = x.shape[-1]
    r = rotary_dim(head_dim, params["fraction"])
    cos, sin = rope_cos_sin(params, head_dim, positions, x.dtype)
    rot, rest = x[..., :r], x[..., r:]
    rot = rot * cos + rotate_half(rot) * sin
    return torch.cat((rot, rest), dim=-1) if r < head_dim else rot


def relative_positions(q_len: int, kv_len: int, offset: int = 0, device: torch.device | str | None = None) -> torch.Tensor:
    """[T, S] int64 matrix of j - i with i = offset + query row, j = key column."""
    q = torch.arange(q_len, device=device) + offset
    kv = torch.arange(kv_len, device=device)
    return kv.view(1, -1) - q.view(-1, 1)


def alibi(heads: int, q_len: int, kv_len: int, offset: int = 0, device: torch.device | str | None = None,
          dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """ALiBi bias [1, H, T, S]: -m_h·|i - j| (seed 002, "Relative Positional Encodings and ALiBi")."""
    slopes = torch.tensor(alibi_slopes(heads), dtype=dtype, device=device).view(1, heads, 1, 1)
    dist = relative_positions(q_len, kv_len, offset, device).abs().to(dtype)
    return -slopes * dist


def t5_buckets(relative_position: torch.Tensor, bidirectional: bool = True, num_buckets: int = 32,
               max_distance: int = 128) -> torch.Tensor:
    """T5 bucket of every ``relative_position = j - i`` (tensor form of ``t5_bucket``, same arithmetic)."""
    bucket = torch.zeros_like(relative_position)
    n = relative_position
    if bidirectional:
        num_buckets //= 2
        bucket = bucket + (n > 0).to(n.dtype) * num_buckets
        n = n.abs()
    else:
        n = -torch.clamp(n, max=0)
    max_exact = num_buckets // 2
    is_small = n < max_exact
    ratio = torch.log(n.clamp(min=1).double() / max_exact) / math.log(max_distance / max_exact)
    large = max_exact + (ratio * (num_buckets - max_exact)).to(n.dtype)  # truncation toward zero, as int()
    large = torch.clamp(large, max=num_buckets - 1)
    return bucket + torch.where(is_small, n, large)


def t5_bias(table: torch.Tensor, params: dict, q_len: int, kv_len: int, offset: int = 0) -> torch.Tensor:
    """T5 relative bias [1, H, T, S] from ``table`` [num_buckets, H] (``rel_bias.weight``)."""
    rel = relative_positions(q_len, kv_len, offset, table.device)
    buckets = t5_buckets(rel, params["bidirectional"], params["num_buckets"], params["max_distance"])
    return table[buckets].permute(2, 0, 1).unsqueeze(0)


def shaw_indices(q_len: int, kv_len: int, max_distance: int, offset: int = 0,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """[T, S] rows of the Shaw table: clip(j - i, -k, k) + k."""
    rel = relative_positions(q_len, kv_len, offset, device)
    return rel.clamp(-max_distance, max_distance) + max_distance


def shaw_scores(q: torch.Tensor, rel_k: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """q_i·a^K_ij for q [B, H, T, d]: [B, H, T, S] (not yet scaled)."""
    return torch.einsum("bhtd,tsd->bhts", q, rel_k[idx])


def shaw_values(p: torch.Tensor, rel_v: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Σ_j p_ij a^V_ij for attention weights p [B, H, T, S]: [B, H, T, d]."""
    return torch.einsum("bhts,tsd->bhtd", p, rel_v[idx])
