"""The banded kernel without autograd: one tile at a time, in place, in reused buffers.

The same tiles as :func:`~.attention_kernels_local.local_core`'s batched path, but each
tile's ``[B·H, C, W]`` scores are written into buffers that every tile reuses (they stay in the
core's cache; nothing T×W is allocated), and nothing is padded: a tile's keys before 0 or past the
end are not computed (their weight would be exactly 0), the last tile has fewer rows.

The softmax skips its max pass where that is exact: ``p = exp(s) ⊙ visible``, ``o = (p @ v) / Σ p``
(softmax is shift-invariant, so this is the softmax to rounding as long as nothing overflows or
underflows). After the loop every row sum is checked — finite, and at least 1e-20 so that every
weight that matters is a normal fp32 number — and a tile that fails is recomputed with the max
subtracted (the reference's way: the mask as an additive bias folded into the score GEMM, then
``softmax``). The global columns of every tile are done at once after the band, as small GEMMs.
Masked pairs are multiplied by 0 after ``exp`` rather than filled with the most negative value
before it: torch's ``exp`` takes a ~100× slower path for inputs below about -87.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .attention_tiles import key_positions, position_terms

#: the smallest row sum Σ exp(s) the max-free softmax accepts: its largest weight is then ≥ 1e-20 / W, and the
#: weights lost to fp32 underflow (< 1.2e-38) are negligible next to it
MIN_ROW_SUM = 1e-20


def in_place_applies(m: Any, needs_grad: bool, dtype: torch.dtype) -> bool:
    """Calls autograd does not record, without dropout or query-dependent position terms (Shaw: their per-query
    gathers are written for the batched tiles), in fp32/fp64 (the reference computes a 16-bit softmax in fp32; the batched path too)."""
    dropout = m.training and m.dropout > 0
    per_query = m.pos.query_bias or m.pos.value_term(m.pos_params)
    return not (needs_grad or per_query or dropout) and dtype in (torch.float32, torch.float64)


def _mask_as(entry: dict[str, Any], kind: str, dtype: torch.dtype) -> torch.Tensor:
    """The cached visibility [Bm, nT, C, W+P] as an additive ``bias`` (0 / most negative finite value, what the
    reference's masked_fill writes) or as ``weights`` (1 / 0), built once per (mask, lengths, dtype)."""
    key = (kind, dtype)
    if key not in entry:
        vis = entry["vis"]
        entry[key] = (torch.zeros(vis.shape, dtype=dtype, device=vis.device).masked_fill_(~vis, torch.finfo(dtype).min)
                      if kind == "bias" else vis.to(dtype))
    return entry[key]


def _query_tiles(q: torch.Tensor, scale: float, chunk: int) -> torch.Tensor:
    """Scaled queries [B, H, T, d] as contiguous tiles [nT, B·H, C, d], the last one zero-padded (one pass)."""
    bsz, heads, q_len, d = q.shape
    n_tiles, full = -(-q_len // chunk), q_len // chunk
    tiles = q.new_empty(n_tiles, bsz * heads, chunk, d)
    q3 = q.reshape(bsz * heads, q_len, d)
    if full:
        torch.mul(q3[:, :full * chunk].view(bsz * heads, full, chunk, d), scale, out=tiles[:full].transpose(0, 1))
    if full < n_tiles:
        tiles[-1].zero_()[:, :q_len - full * chunk] = q3[:, full * chunk:] * scale
    return tiles


def _unusable_sums(row_sums: torch.Tensor) -> list[int]:
    """Tiles (dim 0) whose row sums of the max-free softmax are not all finite and >= MIN_ROW_SUM (NaN fails)."""
    ok = (row_sums >= MIN_ROW_SUM) & (row_sums < float("inf"))
    if bool(ok.all()):
        return []
    return (~ok.flatten(1).all(1)).nonzero().flatten().tolist()


class _Tile:
    """Tile t of the band: its scaled queries [B·H, C, d], the keys and values that exist in its window
    ([B·H, w, d] views) and their columns ``c0:c1`` in the cached masks."""

    def __init__(self, t: int, q_tiles: torch.Tensor, k3: torch.Tensor, v3: torch.Tensor, first_key: int, width: int):
        chunk, kv_len = q_tiles.shape[2], k3.shape[1]
        start = first_key + t * chunk
        lo, hi = max(0, start), min(kv_len, start + width)  # keys before 0 / past the end are not computed
        self.t, self.q, self.k, self.v = t, q_tiles[t], k3[:, lo:hi], v3[:, lo:hi]
        self.c0, self.c1 = lo - start, hi - start

    def mask(self, full: torch.Tensor, heads: int) -> torch.Tensor:
        """This tile's band part of a cached mask [Bm, nT, C, W+P]: a view [1, C, w], or [B·H, C, w]."""
        part = full[:, self.t, :, self.c0:self.c1]
        return part if part.shape[0] == 1 else part.repeat_interleave(heads, 0)


def _per_head(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[Bm, nT, C, P] → [nT, 1 or B·H, C, P] (a mask over batch rows, the same for every head)."""
    x = x.transpose(0, 1)
    return x if x.shape[1] == 1 else x.repeat_interleave(heads, 1)


class _Terms:
    """Adds the ALiBi / T5 scores of tiles (an index or a slice of them) at some mask columns to their scores."""

    def __init__(self, m: Any, q: torch.Tensor, grids: tuple[torch.Tensor, torch.Tensor], kv_pos: torch.Tensor):
        self.m, self.q, self.q_pos, self.kv_pos = m, q, grids[0][0], kv_pos  # q_pos [nT, C, 1], kv_pos [nT, 1, W+P]

    def add(self, scores: torch.Tensor, t: slice | int, cols: slice | torch.Tensor) -> None:
        """``scores`` [(nT,) B·H, C, w] += the position term at mask columns ``cols`` (nothing for other encodings)."""
        if not self.m.pos.score_bias:  # query-dependent terms never reach the in-place loop (in_place_applies)
            return
        term = position_terms(self.m, self.q[:1, :1], self.q_pos[t], self.kv_pos[t][..., cols])[0]  # [H, (nT,) C, w]
        bsz, heads = self.q.shape[:2]
        scores.view(*scores.shape[:-3], bsz, heads, *scores.shape[-2:]).add_(term.movedim(0, -3).unsqueeze(-4))


def _band(tiles: list[_Tile], weights: torch.Tensor, terms: _Terms, out: torch.Tensor, row_sums: torch.Tensor,
          heads: int) -> None:
    """Each tile's band: ``out[t] = exp(s) ⊙ visible @ v`` and ``row_sums[t] = Σ exp(s) ⊙ visible``, unnormalised."""
    buffers: dict[int, torch.Tensor] = {}  # scores per window width, reused by every tile: they stay in cache
    for tile in tiles:
        w = tile.k.shape[1]
        scores = buffers[w] if w in buffers else buffers.setdefault(w, out.new_empty(*out.shape[1:3], w))
        torch.bmm(tile.q, tile.k.transpose(1, 2), out=scores)  # [B·H, C, w]
        terms.add(scores, tile.t, slice(tile.c0, tile.c1))
        scores.exp_().mul_(tile.mask(weights, heads))  # exp(s) ⊙ visible
        torch.sum(scores, -1, keepdim=True, out=row_sums[tile.t])
        torch.bmm(scores, tile.v, out=out[tile.t])


def _global_columns(q: torch.Tensor, scale: float, kg: torch.Tensor, vg: torch.Tensor, weights: torch.Tensor,
                    terms: _Terms, out: torch.Tensor, row_sums: torch.Tensor, width: int) -> None:
    """Adds every query's global columns (keys kg, values vg [B·H, P, d]) to ``out`` and ``row_sums`` at once."""
    n_tiles, bh, chunk, d = out.shape
    glob = torch.bmm(q.reshape(bh, -1, d), kg.transpose(1, 2) * scale)  # [B·H, T, P]: two small GEMMs per head
    glob = F.pad(glob, (0, 0, 0, n_tiles * chunk - glob.shape[1])).view(bh, n_tiles, chunk, -1)  # [B·H, nT, C, P]
    glob = glob.transpose(0, 1).contiguous()  # [nT, B·H, C, P]: small (P is a few columns)
    terms.add(glob, slice(None), slice(width, width + kg.shape[1]))
    glob.exp_().mul_(_per_head(weights[..., width:], q.shape[1]))
    row_sums += glob.sum(-1, keepdim=True)
    for p in range(kg.shape[1]):  # rank-1 updates: ~3× faster than a [T, P]·[P, d] GEMM for a few columns
        out.addcmul_(glob[..., p:p + 1], vg[:, p].view(1, bh, 1, d))


def _with_max_subtracted(tile: _Tile, kg: torch.Tensor, vg: torch.Tensor, bias: torch.Tensor, terms: _Terms,
                         out: torch.Tensor, width: int, heads: int) -> None:
    """Recomputes one tile the reference's way (the mask as an additive bias, ``softmax``) into ``out[t]``."""
    cols_t = torch.cat([torch.arange(tile.c0, tile.c1), torch.arange(width, width + kg.shape[1])])
    scores = torch.baddbmm(_per_head(bias[:, tile.t:tile.t + 1, :, cols_t], heads)[0], tile.q,
                           torch.cat([tile.k, kg], 1).transpose(1, 2))  # [B·H, C, w+P]
    terms.add(scores, tile.t, cols_t)
    torch.bmm(torch.softmax(scores, -1), torch.cat([tile.v, vg], 1), out=out[tile.t])


def tiles_in_place(m: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cols: torch.Tensor,
                   entry: dict[str, Any], grids: tuple[torch.Tensor, torch.Tensor], first_key: int) -> torch.Tensor:
    """Attention of q [B, H, T, d] over k, v [B, H, S, d] (heads already repeated), tile by tile: tile t's band
    keys start at ``first_key + t·C``, then the global columns ``cols``; ``entry`` holds the cached visibility.
    Returns [B, H, T, d], laid out as [B, T, H, d] so that merging the heads afterwards is a view."""
    (bsz, heads, q_len, d), kv_len = q.shape, k.shape[-2]
    n_tiles, chunk, width, bh = grids[0].shape[1], grids[0].shape[2], grids[1].shape[-1], bsz * heads
    q_tiles = _query_tiles(q, m.scale, chunk)  # [nT, B·H, C, d]
    k3, v3 = k.reshape(bh, kv_len, d), v.reshape(bh, kv_len, d)
    kg, vg = k3[:, cols], v3[:, cols]  # [B·H, P, d]: the global columns (P may be 0)
    tiles = [_Tile(t, q_tiles, k3, v3, first_key, width) for t in range(n_tiles)]
    terms = _Terms(m, q, grids, key_positions(grids, cols)[0])
    weights = _mask_as(entry, "weights", q.dtype)
    out, row_sums = q.new_empty(n_tiles, bh, chunk, d), q.new_empty(n_tiles, bh, chunk, 1)
    _band(tiles, weights, terms, out, row_sums, heads)
    if cols.numel():
        _global_columns(q, m.scale, kg, vg, weights, terms, out, row_sums, width)
    failed = _unusable_sums(row_sums)
    out.div_(row_sums)
    for t in failed:
        _with_max_subtracted(tiles[t], kg, vg, _mask_as(entry, "bias", q.dtype), terms, out, width, heads)
    out = out.view(n_tiles, bsz, heads, chunk, d).permute(1, 0, 3, 2, 4)  # [B, nT, C, H, d]
    return out.reshape(bsz, n_tiles * chunk, heads, d)[:, :q_len].transpose(1, 2)  # [B, H, T, d]
