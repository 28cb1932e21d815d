"""Document ("block-diagonal") kernel of lowered attention: packed sequences computed one document at a time.

A ``document`` mask (``doc_ids[b][i] == doc_ids[b][j]``), alone or AND-ed with other masks (causal, sliding
window, key padding, …), lets query i see only the keys of its own document. When every document is one
contiguous run of positions (packing), the query tile of a run is the run itself and its key range is the
same run: read from ``doc_ids`` at run time (run-length encoding, no compile, no BlockMask), so only
``Σ_docs L²`` pairs are computed instead of ``T²``. Runs of equal length are batched into one call
(``[n, H, L, d]``); the outputs are put back in place by one gather.

Inside a run the document leaf holds everywhere, so only the *rest* of the mask is evaluated (with the
registered predicates at absolute positions, as the reference does):

* the rest is exactly causal (or nothing) and there is no score term -> SDPA with ``is_causal`` (or no mask);
* no value term and no learnable score term with gradients on -> SDPA with the rest as a boolean mask, or an
  additive float mask (position term, masked pairs at the dtype's most negative finite value);
* otherwise (Shaw values, T5's learnable table in training) -> the reference's math on the run's tiles.

Query tiles (attention_kernels_document_tiles.py): when the rest bounds how far ahead a query looks (causal, a
sliding window), a run longer than a tile is cut into query tiles, each computed against only the key chunks its
mask can reach, so the blocks above the diagonal (and outside a window) are never computed, forward or backward.
A causal run without a score term from ``is_causal_from`` tokens on stays one ``is_causal`` call: torch's CPU
kernel skips those blocks itself there (measured: tiling such runs gains nothing at 1024 tokens, loses at 2048).

Every path is autograd through block-sparse tensors, so the backward is block-sparse too. Position terms
(ALiBi, T5 buckets, Shaw) are evaluated at the positions the encoding uses: the per-row ids of the ``positions``
input when connected (per-document positions, ``ids``), else the absolute index; RoPE is applied to q and k (at
those ids) before the core.
Rows with no visible key get the reference's uniform attention over all S keys (``fix_empty_rows``).
A document id that recurs after another one (not contiguous), or a call with cached keys (decoding),
is computed densely per batch row with the full mask — the reference's math, still exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from nngraph.attention import masks as masks
from nngraph.attention.analysis import hides_nothing, key_reach, mask_kind

from .attention import softmax
from .attention_kernels_document_tiles import by_shape, run_tiles, tile_size
from .attention_kernels_local import _uniform_rows
from .attention_masks import mask_at


def split_document(node: masks.MaskNode) -> masks.MaskNode | None:
    """The mask without its top-level ``document`` conjunct (None: nothing else is left)."""
    kids = list(node.children) if node.op == "all" else [node]
    rest = [c for c in kids if not (c.op == "leaf" and c.name == "document")]
    return None if not rest else rest[0] if len(rest) == 1 else masks.MaskNode("all", children=tuple(rest))


def document_runs(doc_ids: torch.Tensor) -> list[tuple[int, int, int]] | None:
    """(batch row, start, length) of every run of equal ids in ``doc_ids`` [B, T]; None when some id recurs
    after another (a document that is not one contiguous run)."""
    change = torch.ones_like(doc_ids, dtype=torch.bool)
    change[:, 1:] = doc_ids[:, 1:] != doc_ids[:, :-1]
    rows, starts = change.nonzero(as_tuple=True)
    if any(int(torch.unique(doc_ids[b]).numel()) != int(change[b].sum()) for b in range(doc_ids.shape[0])):
        return None
    t = doc_ids.shape[1]
    rows_l, starts_l = rows.tolist(), starts.tolist()
    out = []
    for i, (b, s) in enumerate(zip(rows_l, starts_l)):
        end = starts_l[i + 1] if i + 1 < len(rows_l) and rows_l[i + 1] == b else t
        out.append((b, s, end - s))
    return out


def _groups(runs: list[tuple[int, int, int]]) -> dict[int, list[tuple[int, int]]]:
    """Runs by length: length -> [(batch row, start)]."""
    out: dict[int, list[tuple[int, int]]] = {}
    for b, s, n in runs:
        out.setdefault(n, []).append((b, s))
    return out


def _flat(t: torch.Tensor) -> torch.Tensor:
    """[B, H, T, d] -> [B·T, H, d] (a view for the projections' layout [B, T, H, d])."""
    return t.transpose(1, 2).reshape(-1, t.shape[1], t.shape[3])


def _rows(flat: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """Rows ``where`` [N] of ``flat`` [B·T, H, d]: a view when they are one ascending range (packed documents of
    one length), ``flat`` itself when that range is every row (a narrow's backward would zero-fill a full-size
    gradient and copy into it), else one copy."""
    lo, n = int(where[0]), where.numel()
    if int(where[-1]) - lo == n - 1 and bool((where[1:] > where[:-1]).all()):
        return flat if n == flat.shape[0] else flat.narrow(0, lo, n)
    return flat.index_select(0, where)


def _run_rows(flat: torch.Tensor, seq: int, rows: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``flat`` [B·seq, H, d] at batch rows ``rows`` [n] and positions ``idx`` [n, L] -> [n, L, H, d] (a view of the
    rows where they are one range)."""
    n, length = idx.shape
    where = (rows.view(-1, 1) * seq + idx).reshape(-1)
    return _rows(flat, where).view(n, length, *flat.shape[1:])


def _gather(flat: torch.Tensor, seq: int, rows: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """:func:`_run_rows` as [n, H, L, d] (a strided view: SDPA and matmul take it as is)."""
    return _run_rows(flat, seq, rows, idx).transpose(1, 2)


def _position_term(m: Any, qs: torch.Tensor, pos_q: torch.Tensor, pos_k: torch.Tensor) -> tuple[Any, Any]:
    """The position's score term [n, H or 1, L, S] and value function for scaled queries qs [n, H, L, d] at
    positions pos_q [n, L], pos_k [n, S] (the hooks take the tile layout [1, H, n, L, d])."""
    q5 = qs.transpose(0, 1).unsqueeze(0)  # [1, H, n, L, d]
    term, values = m.hooks.tile_terms(m, q5, pos_q.unsqueeze(-1), pos_k.unsqueeze(-2))
    if term is not None:
        term = (term[0] if term.dim() == 5 else term).transpose(0, 1)  # [H, n, L, S] -> [n, H, L, S]
    if values is None:
        return term, None

    def in_layout(p: torch.Tensor) -> torch.Tensor | None:
        extra = values(p.transpose(0, 1).unsqueeze(0))
        return None if extra is None else extra[0].transpose(0, 1)

    return term, in_layout


def _math(m: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, vis: torch.Tensor | None, term: Any,
          values: Any) -> torch.Tensor:
    """The reference's arithmetic on one group: softmax(q kᵀ·scale + B, masked) @ v (+ value term)."""
    scores = torch.matmul(q * m.scale, k.transpose(-2, -1))
    if term is not None:
        scores = scores + term
    if vis is not None:
        scores = scores.masked_fill(~vis, torch.finfo(scores.dtype).min)
    p = F.dropout(softmax(scores), m.dropout, m.training)
    o = torch.matmul(p, v)
    extra = values(p) if values is not None else None
    return o if extra is None else o + extra


def _sdpa(m: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, vis: torch.Tensor | None, term: Any,
          causal: bool) -> torch.Tensor:
    """SDPA on one group: is_causal, a boolean mask, or an additive float mask (the term, masked pairs at min)."""
    attn = vis
    if term is not None:
        attn = term.to(q.dtype).expand(q.shape[0], -1, -1, -1)
        if vis is not None:
            attn = attn.masked_fill(~vis, torch.finfo(q.dtype).min)
    drop = m.dropout if m.training else 0.0
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn, dropout_p=drop, is_causal=causal, scale=m.scale)


@dataclass
class _Call:
    """What every group of one call shares: the module, its tier, the mask inputs, whether gradients are taken, the
    position ids of the score term (q [B, T], k [B, S]; None: absolute indices), v [B, H, S, d] (empty rows' uniform
    attention), the absolute position after the last query (``q_end``) and that of the first (``offset``)."""

    m: Any
    tier: dict[str, Any]
    inputs: dict[str, Any]
    needs_grad: bool
    ids: tuple[torch.Tensor, torch.Tensor] | None
    v: torch.Tensor
    q_end: int
    offset: int


def _attend(call: _Call, qkv: tuple[torch.Tensor, torch.Tensor, torch.Tensor], rest: Any,
            where: tuple[torch.Tensor, torch.Tensor, torch.Tensor], causal: bool = False,
            vis: torch.Tensor | None = None) -> torch.Tensor:
    """Attention of gathered queries qkv[0] [n, H, Lq, d] (batch rows, absolute positions ``where`` = (rows [n],
    q_idx [n, Lq], kv_idx [n, Lk])) over the gathered keys and values [n, H, Lk, d]: [n, H, Lq, d]. ``rest``: the
    mask evaluated on those pairs (None: all visible); ``causal``: it is exactly causal on aligned queries and keys
    (SDPA's is_causal, no mask tensor); ``vis``: the mask on those pairs when the caller has it already."""
    m, tier = call.m, call.tier
    rows, q_idx, kv_idx = where
    qg, kg, vg = qkv
    kv_len = call.v.shape[-2]
    if vis is None and rest is not None and not hides_nothing(rest) and not causal:
        inputs = {n: t for n, t in call.inputs.items() if n in masks.MASK_INPUTS}
        vis = mask_at(rest, rows.view(-1, 1, 1, 1), q_idx.unsqueeze(1).unsqueeze(-1), kv_idx.unsqueeze(1).unsqueeze(-2),
                      q_len=call.q_end, kv_len=kv_len, **inputs)
    term, values = None, None
    if m.pos.score_bias:
        pos_q = call.ids[0][rows.view(-1, 1), q_idx - call.offset] if call.ids is not None else q_idx
        pos_k = call.ids[1][rows.view(-1, 1), kv_idx] if call.ids is not None else kv_idx
        term, values = _position_term(m, qg * m.scale, pos_q, pos_k)
    learnable = term is not None and call.needs_grad and tier.get("bias_grad") is False and m.pos.learnable
    if values is not None or learnable or not tier.get("sdpa", True):
        if causal:
            n = q_idx.shape[-1]
            vis = torch.ones(n, n, dtype=torch.bool, device=qg.device).tril()
        o = _math(m, qg, kg, vg, vis, term, values)
    else:
        o = _sdpa(m, qg, kg, vg, vis, term, causal)
    if tier.get("fix_empty_rows") and vis is not None:
        empty = ~vis.expand(o.shape[0], 1, *vis.shape[-2:]).any(-1, keepdim=True)  # [n, 1, Lq, 1]
        if bool(empty.any()):
            uniform = torch.stack([_uniform_rows(m, call.v[r:r + 1], qi)[0] for r, qi in zip(rows.tolist(), q_idx)])
            o = torch.where(empty, uniform.to(o.dtype), o)
    return o


def _group(call: _Call, flats: tuple[torch.Tensor, ...], rest: Any, where: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
           causal: bool = False) -> torch.Tensor:
    """:func:`_attend` on the queries and keys at ``where`` of the rows ``flats`` = q, k, v [B·(T|S), H, d]."""
    rows, q_idx, kv_idx = where
    q_len, kv_len = flats[0].shape[0] // call.v.shape[0], call.v.shape[-2]
    qkv = (_gather(flats[0], q_len, rows, q_idx - call.offset), _gather(flats[1], kv_len, rows, kv_idx),
           _gather(flats[2], kv_len, rows, kv_idx))
    return _attend(call, qkv, rest, where, causal)


def _cat(parts: list[torch.Tensor], dim: int) -> torch.Tensor:
    """``torch.cat`` that keeps a single part as it is (a view, no copy)."""
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim)


def _span(run: torch.Tensor, chunks: tuple[torch.Tensor, ...], tile: int, a: int, b: int, grad: bool) -> torch.Tensor:
    """Chunks a..b-1 of ``run`` [n, L, H, d] along L: a view without gradients; with them the ``chunks`` (one split
    of ``run``) concatenated — a contiguous copy whose backward is views, where a slice of ``run`` would get a
    zero-filled [n, L, H, d] gradient per tile."""
    return _cat(list(chunks[a:b]), 1) if grad else run[:, a * tile:b * tile]


def _tiled(call: _Call, flats: tuple[torch.Tensor, ...], rest: Any, rows: torch.Tensor, idx: torch.Tensor,
           tile: int, reach: tuple[int | None, int | None], causal: bool) -> torch.Tensor:
    """The runs at ``idx`` [n, L] (rows [n]) in query tiles of ``tile`` positions, each against only the key chunks
    its mask reaches (attention_kernels_document_tiles.py): [n, H, L, d]. Tiles of one shape are one call; chunks
    are cut in the rows' layout [n, L, H, d]. ``causal``: the rest is exactly causal, so one [Lq, Lk] mask from the
    positions in the run serves every run."""
    length, grad = idx.shape[1], call.needs_grad
    q_len, kv_len = flats[0].shape[0] // call.v.shape[0], call.v.shape[-2]
    qr, kr, vr = (_run_rows(f, n, rows, idx) for f, n in zip(flats, (q_len, kv_len, kv_len)))
    qc, kc, vc = (r.split(tile, 1) for r in (qr, kr, vr))
    local = torch.arange(length, device=idx.device)
    pieces: dict[int, torch.Tensor] = {}
    for members in by_shape(run_tiles(length, tile, reach), length, tile).values():
        q = _cat([qc[c] for c, _, _ in members], 0).transpose(1, 2)
        k, v = (_cat([_span(r, ch, tile, a, b, grad) for _, a, b in members], 0).transpose(1, 2)
                for r, ch in ((kr, kc), (vr, vc)))
        where = (rows.repeat(len(members)), _cat([idx[:, c * tile:(c + 1) * tile] for c, _, _ in members], 0),
                 _cat([idx[:, a * tile:b * tile] for _, a, b in members], 0))
        c, a, b = members[0]
        vis = local[c * tile:(c + 1) * tile, None] >= local[None, a * tile:b * tile] if causal else None
        o = _attend(call, (q, k, v), rest, where, vis=vis)
        for j, (c, _, _) in enumerate(members):
            pieces[c] = o[j * len(rows):(j + 1) * len(rows)]
    # joined along L in the rows' layout [n, L, H, d] (SDPA's output follows q's): the caller's [n·L, H, d] is a view
    return _cat([pieces[c].transpose(1, 2) for c in range(len(pieces))], 1).transpose(1, 2)


def document_core(m: Any, tier: dict[str, Any], q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, offset: int,
                  batch: int, inputs: dict[str, torch.Tensor | None], needs_grad: bool,
                  ids: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Attention of q [B, H, T, d] over k, v [B, G, S, d] one document run at a time; returns [B, H, T, d].
    ``ids``: per-row position ids (q [B, T], k [B, S]) the score term reads (the ``positions`` input)."""
    node = m.mask if isinstance(m.mask, masks.MaskNode) else masks.parse_mask(m.mask)
    k, v = m.repeat_kv(k), m.repeat_kv(v)
    bsz, heads, q_len, d = q.shape
    kv_len, dev = k.shape[-2], q.device
    flats = (_flat(q), _flat(k), _flat(v))
    call = _Call(m, tier, inputs, needs_grad, ids, v, offset + q_len, offset)
    doc_ids = inputs.get("doc_ids")
    runs = document_runs(doc_ids) if doc_ids is not None and offset == 0 and q_len == kv_len else None
    if runs is None:  # dense per batch row, the full mask: the reference's math
        rows = torch.arange(bsz, device=dev)
        q_idx = (offset + torch.arange(q_len, device=dev)).expand(bsz, -1)
        return _group(call, flats, node, (rows, q_idx, torch.arange(kv_len, device=dev).expand(bsz, -1)))
    rest = split_document(node)
    causal = rest is not None and mask_kind(rest, False) == "causal"
    reach = key_reach(rest) if rest is not None else (None, None)
    whole_causal = causal and not m.pos.score_bias and bool(tier.get("sdpa", True))
    outs, order = [], []
    for length, members in _groups(runs).items():
        rows = torch.tensor([b for b, _ in members], device=dev)
        starts = torch.tensor([s for _, s in members], device=dev)
        idx = starts.view(-1, 1) + torch.arange(length, device=dev)  # [n, L]
        tile = tile_size(length, reach, tier, whole_causal)
        o = _tiled(call, flats, rest, rows, idx, tile, reach, causal) if tile else \
            _group(call, flats, rest, (rows, idx, idx), causal)
        outs.append(o.transpose(1, 2).reshape(-1, heads, d))  # [n·L, H, d]
        order.append((rows.view(-1, 1) * q_len + idx).reshape(-1))
    return _scatter(outs, order, bsz, q_len)


def _scatter(outs: list[torch.Tensor], order: list[torch.Tensor], bsz: int, q_len: int) -> torch.Tensor:
    """The groups' outputs [n·L, H, d] (rows ``order``) back in place: [B, H, T, d] (one gather, none when the
    groups are already in order)."""
    flat = torch.cat(outs) if len(outs) > 1 else outs[0]
    where = torch.cat(order) if len(order) > 1 else order[0]
    if not bool((where == torch.arange(where.numel(), device=where.device)).all()):
        inverse = torch.empty_like(where)
        inverse[where] = torch.arange(where.numel(), device=where.device)
        flat = flat.index_select(0, inverse)
    return flat.view(bsz, q_len, *flat.shape[1:]).transpose(1, 2)
