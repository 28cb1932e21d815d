"""Position encodings inside attention as tensors (front end: nngraph/attention/positions.py).

* RoPE (``qk_transform``; Su et al. 2021, seed 002 "Rotary Positional Embeddings and Long-Context
  Extrapolation"): the first r = int(head_dim·fraction) dims of every query and key are rotated,
  the rest pass through (partial rotary, GPT-NeoX). Convention: **rotate-half** (GPT-NeoX / Hugging
  Face LLaMA): dim i is paired with dim i + r/2, both turning by angle m·θ_i, so
  ``rope(x, m) = x·cos(mθ) + rotate_half(x)·sin(mθ)`` with ``rotate_half([a, b]) = [-b, a]`` and
  cos/sin repeated over the two halves -- exactly ``transformers``' ``apply_rotary_pos_emb``, so
  LLaMA checkpoints load without permuting rows. θ_i = :func:`rope_inv_freq` (linear, NTK, YaRN and
  Llama 3 scaling included); YaRN also multiplies cos and sin by :func:`rope_attention_factor`.
* ALiBi (``score_bias``; Press et al. 2022): bias[h, i, j] = -m_h·|i - j|.
* T5 buckets (``score_bias``; Raffel et al. 2020): bias[h, i, j] = ``rel_bias.weight[bucket(j - i), h]``
  with :func:`t5_buckets`, the tensor form of ``t5_bucket`` (and of HF ``T5Attention._relative_position_bucket``).
* window bias (``score_bias``; Liu et al. 2021, Swin): bias[h, i, j] =
  ``relative_position_bias_table[window_relative_index(i, j), h]`` (a learned [(2r-1)(2c-1), H] table).
* Shaw (``score_bias``; Shaw et al. 2018): scores[i, j] += q_i·rel_k[clip(j - i, -k, k) + k]·scale; with
  ``values: true`` the output adds Σ_j p_ij rel_v[clip(j - i, -k, k) + k].

Positions are absolute indices: queries ``offset .. offset + T - 1`` and keys ``0 .. S - 1`` (offset =
cached positions while decoding with a KV cache, else 0), unless the node has a ``positions`` input:
then ``ids = (q_pos [B, T], k_pos [B, S])`` are per-row position ids (left padding, packing) and every
term uses them instead -- RoPE rotates at q_pos, the biases read k_pos - q_pos per row.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from nngraph.attention.positions import (alibi_slopes, rope_attention_factor, rope_inv_freq, rotary_dim, window_dims,
                                         window_relative_index)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """[a, b] -> [-b, a] over the last dim (the two halves of the rotated dims)."""
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


def rope_cos_sin(params: dict, head_dim: int, positions: torch.Tensor,
                 dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [..., T, r] for integer ``positions`` [..., T] (angles computed in float32 or better)."""
    inv = torch.tensor(rope_inv_freq(head_dim, **params), dtype=torch.float64)
    inv = inv.to(torch.float64 if dtype == torch.float64 else torch.float32)
    inv = inv.to(positions.device)
    angles = positions.to(inv.dtype).unsqueeze(-1) * inv  # [..., T, r/2]
    emb = torch.cat((angles, angles), dim=-1)
    attn_factor = rope_attention_factor(params["scaling"], params["factor"])
    return (emb.cos() * attn_factor).to(dtype), (emb.sin() * attn_factor).to(dtype)


def apply_rope(x: torch.Tensor, params: dict, positions: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, H, T, d] at ``positions`` [T] or per row [B, T] (rotate-half convention; the first r dims only)."""
    head_dim = x.shape[-1]
    r = rotary_dim(head_dim, params["fraction"])
    cos, sin = rope_cos_sin(params, head_dim, positions, x.dtype)
    if positions.dim() == 2:  # per-row ids [B, T]: broadcast over the heads of x [B, H, T, d]
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    rot, rest = x[..., :r], x[..., r:]
    rot = rot * cos + rotate_half(rot) * sin
    return torch.cat((rot, rest), dim=-1) if r < head_dim else rot


def relative_positions(q_len: int, kv_len: int, offset: int = 0, device: torch.device | str | None = None) -> torch.Tensor:
    """[T, S] int64 matrix of j - i with i = offset + query row, j = key column."""
    q = torch.arange(q_len, device=device) + offset
    kv = torch.arange(kv_len, device=device)
    return kv.view(1, -1) - q.view(-1, 1)


def row_relative(ids: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """[B, T, S] int64 matrix of pos_k - pos_q per row from ids = (q_pos [B, T], k_pos [B, S])."""
    q_pos, k_pos = ids
    return k_pos.long().unsqueeze(-2) - q_pos.long().unsqueeze(-1)


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


# ----- the torch hooks of each registered position encoding -----------------------------------------------
class TorchPosition:
    """How the torch kernels apply one registered position encoding (front end:
    :class:`~nngraph.attention.positions.PositionDef`). The defaults add nothing; an encoding overrides the
    hooks of its kind. ``m`` is the attention module (``heads``, ``head_dim``, ``scale``, ``pos_params`` and
    the tables :meth:`build` made); positions are absolute (queries start at ``offset``)."""

    def build(self, m: torch.nn.Module, params: dict, heads: int, head_dim: int) -> None:
        """Create the encoding's parameters on ``m`` (learnable tables)."""

    def qk(self, m: torch.nn.Module, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor) -> tuple:
        """``qk_transform``: q [B, H, T, d], k [B, G, T, d] at absolute ``positions`` [T]."""
        return q, k

    def cos_sin(self, m: torch.nn.Module, positions: torch.Tensor, dtype: torch.dtype) -> tuple:
        """A rotary ``qk_transform`` (the front end's ``rotary`` hook): cos, sin [T, r] of rotate-half rotations at
        ``positions``, for fused ops with a rotary option (GroupQueryAttention's cos/sin caches)."""
        raise NotImplementedError(f"{type(self).__name__} is not a rotary embedding")

    def bias(self, m: torch.nn.Module, q: torch.Tensor, q_len: int, kv_len: int, offset: int,
             ids: tuple | None = None) -> torch.Tensor | None:
        """``score_bias`` (dense): the term B [B|1, H, T, S] added to the scaled scores, or None (``ids``: per-row
        position ids (q_pos [B, T], k_pos [B, S]) replacing offset + arange)."""
        return None

    def values(self, m: torch.nn.Module, p: torch.Tensor, q_len: int, kv_len: int, offset: int,
               ids: tuple | None = None) -> torch.Tensor | None:
        """The value term Σ_j p_ij a^V_ij [B, H, T, d] for weights p [B, H, T, S], or None."""
        return None

    def score_mod(self, m: torch.nn.Module, q: torch.Tensor, offset: int, q_len: int, kv_len: int) -> Any:
        """FlexAttention's ``score_mod(s, b, h, q_idx, kv_idx)`` adding B, or None."""
        return None

    def tile_terms(self, m: torch.nn.Module, q: torch.Tensor, q_idx: torch.Tensor,
                   kv_idx: torch.Tensor) -> tuple[Any, Any]:
        """Banded tiles: (score term at absolute positions ``q_idx`` [..., C, 1], ``kv_idx`` [..., 1, W], shaped
        [H or 1, ..., C, W] (heads first: the in-place tile loop moves that dim), or None;
        ``values(p) -> Σ_j p_ij a^V_ij`` or None) for scaled queries q [B, H, ..., C, d]."""
        return None, None

    def uniform_values(self, m: torch.nn.Module, v: torch.Tensor, q_idx: torch.Tensor) -> torch.Tensor | None:
        """The value term of a row attending uniformly to all S keys, per query position ``q_idx`` [T]."""
        return None


TORCH_POSITIONS: dict[str, TorchPosition] = {}
_NO_TERM = TorchPosition()


def torch_position(name: str) -> Any:
    """Class decorator: the torch hooks of the registered position encoding ``name``."""

    def deco(cls: type[TorchPosition]) -> type[TorchPosition]:
        TORCH_POSITIONS[name] = cls()
        return cls

    return deco


def hooks_of(name: str) -> TorchPosition:
    """The torch hooks of position ``name``: its own, else the derived ones of its ``score`` formula; an encoding
    that acts inside attention must have one or the other."""
    from nngraph.attention.positions import POSITIONS

    got = TORCH_POSITIONS.get(name) or (_FORMULA if POSITIONS[name].score is not None else None)
    if got is None and POSITIONS[name].kind != "input_transform":
        raise LookupError(f"position '{name}' has no torch hooks: declare its score= formula or register hooks "
                          f"with @torch_position('{name}')")
    return got or _NO_TERM


def _leading(x: Any, dims: int, like: torch.Tensor) -> torch.Tensor:
    """``x`` (a tensor or a number) as a tensor of ``like``'s dtype and device with at least ``dims`` dims (leading
    ones added): a formula that ignores the head (or everything) still broadcasts as [H or 1, ...]."""
    x = torch.as_tensor(x, dtype=like.dtype, device=like.device)
    return x.reshape((1,) * (dims - x.dim()) + tuple(x.shape))


def _exact(dtype: torch.dtype) -> torch.dtype:
    """The dtype a formula sees positions in: the scores' dtype, at least float32 (bf16 is not exact past 256)."""
    return torch.promote_types(dtype, torch.float32)


class ScoreFormula(TorchPosition):
    """The hooks of a position declared by its ``score(h, q_idx, kv_idx, **params)`` formula B[h, i, j], all three
    forms derived from the one formula by broadcasting (no loop over positions). Head and positions arrive as
    floating tensors of the scores' dtype (at least float32, so positions stay exact): the term is computed at
    the kernel's precision (float64 for the reference), then cast to the scores' dtype."""

    def bias(self, m, q, q_len, kv_len, offset, ids=None):
        """Dense B [1, H or 1, T, S] from h [1, H, 1, 1], i [1, 1, T, 1] (offset on), j [1, 1, 1, S]; with per-row
        ids, i [B, 1, T, 1] and j [B, 1, 1, S] from them."""
        dtype = _exact(q.dtype)
        h = torch.arange(m.heads, dtype=dtype, device=q.device).view(1, -1, 1, 1)
        if ids is not None:
            i, j = ids[0].to(dtype)[:, None, :, None], ids[1].to(dtype)[:, None, None, :]
        else:
            i = (torch.arange(q_len, device=q.device) + offset).to(dtype).view(1, 1, -1, 1)
            j = torch.arange(kv_len, dtype=dtype, device=q.device).view(1, 1, 1, -1)
        return _leading(m.pos.score(h, i, j, **m.pos_params), 4, q)

    def score_mod(self, m, q, offset, q_len, kv_len):
        """s + B[h, i, j] per score."""
        score, params = m.pos.score, m.pos_params

        def mod(s, b, h, qi, kv):
            dtype = _exact(s.dtype)
            return s + score(h.to(dtype), (qi + offset).to(dtype), kv.to(dtype), **params)

        return mod

    def tile_terms(self, m, q, q_idx, kv_idx):
        """B at the tiles' positions, heads first: h [H, 1, ..., 1] against q_idx [..., C, 1], kv_idx [..., 1, W]."""
        dims, dtype = max(q_idx.dim(), kv_idx.dim()) + 1, _exact(q.dtype)
        h = torch.arange(m.heads, dtype=dtype, device=q.device).view(-1, *([1] * (dims - 1)))
        term = m.pos.score(h, q_idx.to(dtype), kv_idx.to(dtype), **m.pos_params)
        return _leading(term, dims, q), None


_FORMULA = ScoreFormula()


@torch_position("rope")
class _Rope(TorchPosition):
    def qk(self, m, q, k, positions):
        return apply_rope(q, m.pos_params, positions), apply_rope(k, m.pos_params, positions)

    def cos_sin(self, m, positions, dtype):
        return rope_cos_sin(m.pos_params, m.head_dim, positions, dtype)


@torch_position("alibi")
class _Alibi(TorchPosition):
    def bias(self, m, q, q_len, kv_len, offset, ids=None):
        if ids is not None:
            slopes = torch.tensor(alibi_slopes(m.heads), dtype=q.dtype, device=q.device).view(1, -1, 1, 1)
            return -slopes * row_relative(ids).abs().to(q.dtype).unsqueeze(1)
        return alibi(m.heads, q_len, kv_len, offset, q.device, q.dtype)

    def score_mod(self, m, q, offset, q_len, kv_len):
        slopes = torch.tensor(alibi_slopes(m.heads), dtype=torch.float32, device=q.device)
        return lambda s, b, h, qi, kv: s - slopes[h] * (qi + offset - kv).abs()

    def tile_terms(self, m, q, q_idx, kv_idx):
        rel = kv_idx - q_idx  # j - i
        slopes = torch.tensor(alibi_slopes(m.heads), dtype=q.dtype, device=q.device)
        return -slopes.view(-1, *([1] * rel.dim())) * rel.abs().to(q.dtype), None


@torch_position("t5_bias")
class _T5(TorchPosition):
    def build(self, m, params, heads, head_dim):
        m.rel_bias = torch.nn.Embedding(params["num_buckets"], heads)

    def bias(self, m, q, q_len, kv_len, offset, ids=None):
        if ids is not None:
            p = m.pos_params
            buckets = t5_buckets(row_relative(ids), p["bidirectional"], p["num_buckets"], p["max_distance"])
            return m.rel_bias.weight[buckets].permute(0, 3, 1, 2)  # [B, T, S, H] -> [B, H, T, S]
        return t5_bias(m.rel_bias.weight, m.pos_params, q_len, kv_len, offset)

    def score_mod(self, m, q, offset, q_len, kv_len):
        p, shift = m.pos_params, offset + q_len - 1
        rel = torch.arange(-shift, kv_len, device=q.device)
        buckets = t5_buckets(rel, p["bidirectional"], p["num_buckets"], p["max_distance"])
        table = m.rel_bias.weight
        return lambda s, b, h, qi, kv: s + table[buckets[kv - qi - offset + shift], h]

    def tile_terms(self, m, q, q_idx, kv_idx):
        rel = kv_idx - q_idx  # j - i
        p = m.pos_params
        buckets = t5_buckets(rel, p["bidirectional"], p["num_buckets"], p["max_distance"])
        return m.rel_bias.weight[buckets].movedim(-1, 0).to(q.dtype), None


def _row_rows(ids: tuple[torch.Tensor, torch.Tensor], k_max: int) -> torch.Tensor:
    """Shaw table rows [B, T, S] per row: clip(pos_k - pos_q, -k, k) + k."""
    return row_relative(ids).clamp(-k_max, k_max) + k_max


@torch_position("shaw")
class _Shaw(TorchPosition):
    def build(self, m, params, heads, head_dim):
        rows = 2 * params["max_distance"] + 1
        m.rel_k = torch.nn.Parameter(torch.empty(rows, head_dim))
        if params["values"]:
            m.rel_v = torch.nn.Parameter(torch.empty(rows, head_dim))

    def bias(self, m, q, q_len, kv_len, offset, ids=None):
        if ids is not None:  # per-row table rows [B, T, S]
            idx = _row_rows(ids, m.pos_params["max_distance"])
            return torch.einsum("bhtd,btsd->bhts", q, m.rel_k[idx]) * m.scale
        idx = shaw_indices(q_len, kv_len, m.pos_params["max_distance"], offset, q.device)
        return shaw_scores(q, m.rel_k, idx) * m.scale  # e_ij = q_i·(k_j + a^K_ij)·scale

    def values(self, m, p, q_len, kv_len, offset, ids=None):
        if not m.pos_params["values"]:
            return None
        if ids is not None:
            return torch.einsum("bhts,btsd->bhtd", p, m.rel_v[_row_rows(ids, m.pos_params["max_distance"])])
        idx = shaw_indices(q_len, kv_len, m.pos_params["max_distance"], offset, p.device)
        return shaw_values(p, m.rel_v, idx)

    def score_mod(self, m, q, offset, q_len, kv_len):
        k_max = m.pos_params["max_distance"]
        qa = torch.einsum("bhtd,rd->bhtr", q, m.rel_k) * m.scale
        return lambda s, b, h, qi, kv: s + qa[b, h, qi, (kv - qi - offset).clamp(-k_max, k_max) + k_max]

    def tile_terms(self, m, q, q_idx, kv_idx):
        rel = kv_idx - q_idx  # j - i
        k_max = m.pos_params["max_distance"]
        idx = (rel.clamp(-k_max, k_max) + k_max).expand(*q.shape[2:-1], rel.shape[-1])  # [..., C, W] table rows
        idx = idx.expand(*q.shape[:2], *idx.shape)
        scores = torch.gather(torch.matmul(q, m.rel_k.transpose(0, 1)), -1, idx)  # q_i·a^K_ij·scale (q is scaled)

        def values(p: torch.Tensor) -> torch.Tensor | None:
            if not m.pos_params["values"]:
                return None
            per_distance = torch.zeros(*p.shape[:-1], 2 * k_max + 1, dtype=p.dtype, device=p.device)
            return torch.matmul(per_distance.scatter_add(-1, idx, p), m.rel_v)  # Σ_j p_ij a^V_ij

        return scores, values

    def uniform_values(self, m, v, q_idx):
        if not m.pos_params["values"]:
            return None
        k_max, kv_len = m.pos_params["max_distance"], v.shape[-2]
        rel = torch.arange(kv_len, device=v.device).view(1, -1) - q_idx.view(-1, 1)  # [T, S]: j - i
        counts = torch.zeros(q_idx.numel(), 2 * k_max + 1, dtype=v.dtype, device=v.device)
        counts.scatter_add_(1, rel.clamp(-k_max, k_max) + k_max, torch.ones_like(rel, dtype=v.dtype))
        return torch.matmul(counts / kv_len, m.rel_v)  # [B, H, T, d]


@torch_position("window_bias")
class _WindowBias(TorchPosition):
    """Swin's learned table, looked up at the 2-D offset of key j from query i inside one window."""

    def build(self, m, params, heads, head_dim):
        rows, cols = window_dims(params)
        m.relative_position_bias_table = torch.nn.Parameter(torch.empty((2 * rows - 1) * (2 * cols - 1), heads))

    @staticmethod
    def term(m, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        """table[idx(i, j)]: [..., H] for broadcastable integer token indices i, j."""
        rows, cols = window_dims(m.pos_params)
        if not torch.jit.is_tracing() and max(int(i.max()), int(j.max())) >= rows * cols:
            raise ValueError(f"window_bias: token index beyond the {rows}x{cols} window (sequence longer than "
                             f"{rows * cols})")
        return m.relative_position_bias_table[window_relative_index(i, j, rows, cols)]

    def bias(self, m, q, q_len, kv_len, offset, ids=None):
        if ids is not None:
            return self.term(m, ids[0][:, :, None].long(), ids[1][:, None, :].long()).permute(0, 3, 1, 2)
        i = torch.arange(q_len, device=q.device).view(-1, 1) + offset
        j = torch.arange(kv_len, device=q.device).view(1, -1)
        return self.term(m, i, j).permute(2, 0, 1).unsqueeze(0).to(q.dtype)

    def score_mod(self, m, q, offset, q_len, kv_len):
        rows, cols = window_dims(m.pos_params)
        table = m.relative_position_bias_table
        return lambda s, b, h, qi, kv: s + table[window_relative_index(qi + offset, kv, rows, cols), h]

    def tile_terms(self, m, q, q_idx, kv_idx):
        rows, cols = window_dims(m.pos_params)
        # tiles may reach past the sequence (padded tiles): clamp, the kernel masks those pairs anyway
        i, j = q_idx.clamp(0, rows * cols - 1), kv_idx.clamp(0, rows * cols - 1)
        return self.term(m, i, j).movedim(-1, 0).to(q.dtype), None
