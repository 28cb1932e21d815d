"""Banded ("local") kernel of lowered attention: sliding-window masks as tiles of dense math.

For a mask whose visible pairs all lie in a band ``i - left <= j <= i + right`` plus a few global
rows and columns (:mod:`nngraph.attention.bands`; sliding window, dilated and local-strided
windows, Longformer's window + global tokens, any of them intersected with key padding), the
queries are cut into tiles of ``C`` and each tile is computed against only the ``W = C + left +
right`` keys its band can reach — a strided view of the padded keys (``unfold``), so nothing is
copied per tile — plus the global columns. Scores are ``[B, H, T/C, C, W + P]``: linear in the
sequence length, where the reference's are ``[B, H, T, S]``. The exact mask predicate is still
evaluated on every computed pair (with the same registered functions as the reference), so the
band only decides what is skipped. Global query rows attend to every key and are computed
densely (``P × S``) and written over their tile rows.

Position terms are evaluated on the same tiles: ALiBi, T5 buckets, and Shaw's relative keys
(``q_i·a^K_ij`` gathered from ``q·a^Kᵀ`` per distance) and values (the tile's weights summed per
clipped distance, then ``@ a^V``) — so Shaw with values, which no fused kernel can serve, is banded too.
Unlike compiled FlexAttention on the CPU this is ordinary autograd math, so it trains too.
The arithmetic is the reference's (scale, bias, masked_fill with the most negative finite value,
softmax, dropout, @ v); rows left with no visible key get the reference's uniform attention
(the mean of v over all keys) when the plan says such rows can occur (``fix_empty_rows``).

Two ways through the tiles, with the same results to rounding:

* with autograd (training), all tiles at once as batched tensor math: ``[B, H, T/C, C, W]`` scores;
* without (inference, ``torch.no_grad``), one tile at a time in reused buffers
  (:mod:`.attention_kernels_local_loop`): each tile's ``[B·H, C, W]`` scores stay in the core's
  cache, no call allocates (and page-faults) a T×W tensor, and the softmax skips its max pass where
  that is exact — about 2× faster than the batched form on the CPU.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F

from nngraph.attention import masks as masks
from nngraph.attention.analysis import band_of
from nngraph.attention.bands import tile_width

from .attention import softmax
from .attention_masks import mask_at
from .attention_tiles import key_positions, position_terms

_MASKS: "OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor | None]]" = OrderedDict()
_MASK_CACHE_SIZE = 16


def _tile_grids(n_tiles: int, chunk: int, width: int, left: int, offset: int, device: torch.device):
    """Absolute query positions [1, nT, C, 1] and key positions [1, nT, 1, W] of every tile."""
    starts = offset + torch.arange(n_tiles, device=device) * chunk
    q_idx = (starts.view(-1, 1) + torch.arange(chunk, device=device)).view(1, n_tiles, chunk, 1)
    kv_idx = (starts.view(-1, 1) - left + torch.arange(width, device=device)).view(1, n_tiles, 1, width)
    return q_idx, kv_idx


def _tile_mask(m: Any, cols: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor, q_end: int,
               kv_len: int, batch: int, inputs: dict[str, torch.Tensor | None]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Visible pairs of the band part [Bm, nT, C, W] and of the global columns [Bm, nT, C, P] (or None)."""
    data = bool(masks.used_inputs(m.mask))
    b = torch.arange(batch if data else 1, device=q_idx.device).view(-1, 1, 1, 1)
    q_safe = q_idx.clamp(max=q_end - 1)  # padded query rows: evaluated at the last real row, then dropped
    inside = (kv_idx >= 0) & (kv_idx < kv_len)
    kv_safe = kv_idx.clamp(0, kv_len - 1)
    vis = mask_at(m.mask, b, q_safe, kv_safe, q_len=q_end, kv_len=kv_len, **inputs) & inside
    if cols.numel():  # a global column inside the band is counted once: in the global part
        vis = vis & ~torch.isin(kv_safe, cols)
        vis_g = mask_at(m.mask, b, q_safe, cols.view(1, 1, 1, -1), q_len=q_end, kv_len=kv_len, **inputs)
        return vis, vis_g.expand(vis.shape[0], *q_idx.shape[1:3], cols.numel())
    return vis, None


def _visibility(m: Any, cols: torch.Tensor, grids: tuple[torch.Tensor, torch.Tensor], q_end: int, kv_len: int,
                batch: int, inputs: dict[str, torch.Tensor | None]) -> dict[str, torch.Tensor]:
    """``vis`` [Bm, nT, C, W+P] (band then global columns; rows with no visible key opened, so they stay
    finite and are patched afterwards) and ``empty`` [Bm, nT, C, 1] (those rows)."""
    vis, vis_g = _tile_mask(m, cols, *grids, q_end, kv_len, batch, inputs)
    if vis_g is not None:
        vis = torch.cat([vis, vis_g], -1)
    empty = ~vis.any(-1, keepdim=True)
    return {"vis": vis | empty, "empty": empty}


def _cached_visibility(m: Any, cols: torch.Tensor, grids: tuple[torch.Tensor, torch.Tensor], q_end: int,
                       kv_len: int, batch: int, inputs: dict[str, torch.Tensor | None], chunk: int,
                       offset: int) -> dict[str, torch.Tensor]:
    """:func:`_visibility`, cached per (mask, lengths, tile) when the mask reads no graph input (the entry also
    keeps the additive biases derived from it, per dtype)."""
    if masks.used_inputs(m.mask):
        return _visibility(m, cols, grids, q_end, kv_len, batch, inputs)
    key = (repr(m.mask), q_end, kv_len, offset, chunk, grids[1].shape[-1], str(grids[0].device))
    if key not in _MASKS:
        _MASKS[key] = _visibility(m, cols, grids, q_end, kv_len, batch, inputs)
        while len(_MASKS) > _MASK_CACHE_SIZE:
            _MASKS.popitem(last=False)
    _MASKS.move_to_end(key)
    return _MASKS[key]


def _uniform_rows(m: Any, v: torch.Tensor, q_idx: torch.Tensor) -> torch.Tensor:
    """What a row with no visible key gets in the reference — uniform attention over all S keys:
    the mean of v, plus the position's value term of uniform weights (Shaw values: (1/S)·Σ_j a^V[clip(j - i)])
    for each query position i [T]."""
    mean = v.mean(-2, keepdim=True)  # [B, H, 1, d]
    extra = m.hooks.uniform_values(m, v, q_idx)
    return mean if extra is None else mean + extra


def _global_rows(m: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rows: torch.Tensor, offset: int,
                 batch: int, inputs: dict[str, torch.Tensor | None], fix_empty: bool) -> torch.Tensor:
    """Attention of the global query rows (absolute positions ``rows``) over every key: [B, H, R, d]."""
    kv_len = k.shape[-2]
    b = torch.arange(batch if masks.used_inputs(m.mask) else 1, device=q.device).view(-1, 1, 1, 1)
    q_idx, kv_idx = rows.view(1, 1, -1, 1), torch.arange(kv_len, device=q.device).view(1, 1, 1, -1)
    vis = mask_at(m.mask, b, q_idx, kv_idx, q_len=offset + q.shape[-2], kv_len=kv_len, **inputs)
    q_rows = q[:, :, rows - offset] * m.scale
    scores = torch.matmul(q_rows, k.transpose(-2, -1))
    term, values = position_terms(m, q_rows, q_idx[0, 0], kv_idx[0, 0])
    if term is not None:
        scores = scores + term
    p = F.dropout(softmax(scores.masked_fill(~vis, torch.finfo(scores.dtype).min)), m.dropout, m.training)
    o = torch.matmul(p, v)
    extra = values(p) if values is not None else None
    if extra is not None:
        o = o + extra
    if fix_empty:
        o = torch.where(~vis.any(-1, keepdim=True), _uniform_rows(m, v, rows).to(o.dtype), o)
    return o


def _batched_tiles(m: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cols: torch.Tensor, vis: torch.Tensor,
                   grids: tuple[torch.Tensor, torch.Tensor], first_key: int) -> torch.Tensor:
    """Every tile at once, as autograd math: q [B, H, T, d] over k, v [B, H, S, d], the visibility ``vis``
    [Bm, nT, C, W+P]; tile t's band keys start at position ``first_key + t·C``. Returns [B, H, T, d]."""
    (bsz, heads, q_len, d), kv_len = q.shape, k.shape[-2]
    n_tiles, chunk, width = grids[0].shape[1], grids[0].shape[2], grids[1].shape[-1]
    qs = F.pad(q * m.scale, (0, 0, 0, n_tiles * chunk - q_len))  # scaling q (T×d) costs less than the scores (T×W)
    qt = qs.view(bsz, heads, n_tiles, chunk, d)  # [B, H, nT, C, d]
    pad_left, pad_right = max(0, -first_key), max(0, first_key + (n_tiles - 1) * chunk + width - kv_len)
    kp = F.pad(k, (0, 0, pad_left, pad_right))[:, :, first_key + pad_left:]  # [B, H, L, d]: tile t's keys: t·C …
    vp = F.pad(v, (0, 0, pad_left, pad_right))[:, :, first_key + pad_left:]
    kt = kp.unfold(2, width, chunk)[:, :, :n_tiles]  # [B, H, nT, d, W]: a strided view, nothing copied
    vt = vp.unfold(2, width, chunk)[:, :, :n_tiles]  # [B, H, nT, d, W]
    scores = torch.matmul(qt, kt)  # [B, H, nT, C, W], already scaled
    if cols.numel():
        kg = k[:, :, cols].transpose(-2, -1).unsqueeze(2)  # [B, H, 1, d, P]
        scores = torch.cat([scores, torch.matmul(qt, kg)], -1)  # [B, H, nT, C, W+P]
    term, values = position_terms(m, qt, grids[0][0], key_positions(grids, cols)[0])
    if term is not None:
        scores = scores + term
    scores.masked_fill_(~vis.unsqueeze(1), torch.finfo(scores.dtype).min)  # a fresh tensor: in place saves a copy
    p = F.dropout(softmax(scores), m.dropout, m.training)
    o = torch.matmul(p[..., :width], vt.transpose(-2, -1))  # [B, H, nT, C, d]
    if cols.numel():
        o = o + torch.matmul(p[..., width:], v[:, :, cols].unsqueeze(2))
    extra = values(p) if values is not None else None
    o = o + extra if extra is not None else o
    return o.reshape(bsz, heads, n_tiles * chunk, d)[:, :, :q_len]  # [B, H, T, d]


def local_core(m: Any, tier: dict[str, Any], q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, offset: int,
               batch: int, inputs: dict[str, torch.Tensor | None], needs_grad: bool) -> torch.Tensor:
    """Attention of q [B, H, T, d] over k, v [B, G, S, d] with banded tiles; returns [B, H, T, d]. ``needs_grad``:
    whether autograd records the call (the module's own answer, which also picked this tier)."""
    band = band_of(m.mask if isinstance(m.mask, masks.MaskNode) else masks.parse_mask(m.mask))
    assert band is not None and band.left is not None, "the banded kernel was chosen for a mask with no band"
    k, v = m.repeat_kv(k), m.repeat_kv(v)
    bsz, heads, q_len, d = q.shape
    kv_len, q_end = k.shape[-2], offset + q.shape[-2]
    left, right = band.left, band.right or 0
    chunk = max(1, min(int(tier.get("chunk", 128)), q_len))
    n_tiles = -(-q_len // chunk)
    width = tile_width(chunk, band)
    cols = torch.tensor(sorted(c for c in band.cols if c < kv_len), dtype=torch.long, device=q.device)

    grids = _tile_grids(n_tiles, chunk, width, left, offset, q.device)
    entry = _cached_visibility(m, cols, grids, q_end, kv_len, batch, inputs, chunk, offset)
    from .attention_kernels_local_loop import in_place_applies, tiles_in_place

    if in_place_applies(m, needs_grad, q.dtype):
        o = tiles_in_place(m, q, k, v, cols, entry, grids, offset - left)
    else:
        o = _batched_tiles(m, q, k, v, cols, entry["vis"], grids, offset - left)
    if tier.get("fix_empty_rows"):
        empty = entry["empty"]
        rows_empty = empty.reshape(empty.shape[0], 1, n_tiles * chunk, 1)[:, :, :q_len]
        q_pos = torch.arange(offset, q_end, device=q.device)
        o = torch.where(rows_empty, _uniform_rows(m, v, q_pos).to(o.dtype), o)
    rows = torch.tensor(sorted(r for r in band.rows if offset <= r < q_end), dtype=torch.long, device=q.device)
    if rows.numel():
        dense = _global_rows(m, q, k, v, rows, offset, batch, inputs, bool(tier.get("fix_empty_rows")))
        # in place when autograd does not need o: a copy of o would also lose its [B, T, H, d] layout
        o = o.index_copy(2, rows - offset, dense) if o.requires_grad else o.index_copy_(2, rows - offset, dense)
    return o
