"""Boolean attention masks as tensors, from the front end's mask predicates (nngraph/attention/masks.py).

A mask is a tree of registered predicates ``fn(b, h, q_idx, kv_idx, **params)`` written with ``&``,
``|``, comparisons and ``logical_not``, so the SAME function that builds the Python-int reference
matrices runs here on broadcast index tensors (FlexAttention ``mask_mod`` style)::

    b  = arange(B)        as [B, 1, 1, 1]     h  = arange(1) as [1, 1, 1, 1]
    q  = offset + arange(T) as [1, 1, T, 1]   kv = arange(S) as [1, 1, 1, S]

and returns a bool tensor that broadcasts to [B, H, T, S] (True = the query may see the key;
seed 002, "Masked Attention and Autoregressive Generation": M_ij = 0 where allowed, -inf elsewhere).
``offset`` is the number of cached positions when decoding with a KV cache (the queries are the
last T of S positions).

Graph inputs reach the predicates as the front end names them: ``lengths`` [B] (indexed
``lengths[b]``), ``key_padding`` [B, S] and ``doc_ids`` [B, T] (indexed ``x[b][i]``; wrapped in
:class:`Table` so ``x[b][i]`` is one broadcast gather ``x[b, i]``). The ``random`` mask (BigBird)
is not an elementwise predicate; its rows come from :func:`~nngraph.attention.masks.random_table`.
"""

from __future__ import annotations

from typing import Any

import torch

from nngraph.attention import masks as masks
from nngraph.attention.analysis import hides_nothing, mask_kind, table_leaves


class Table:
    """A [B, N] tensor indexed like the front end's nested lists: ``t[b][i]`` is ``t[b, i]`` (broadcast)."""

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor

    def __getitem__(self, b: Any) -> "_Row":
        return _Row(self.tensor, b)


class _Row:
    def __init__(self, tensor: torch.Tensor, b: Any):
        self.tensor, self.b = tensor, b

    def __getitem__(self, i: Any) -> torch.Tensor:
        return self.tensor[self.b, i]


def index_grids(batch: int, q_len: int, kv_len: int, offset: int = 0,
                device: torch.device | str | None = None) -> tuple[torch.Tensor, ...]:
    """(b, h, q_idx, kv_idx) int64 index tensors shaped [B,1,1,1], [1,1,1,1], [1,1,T,1], [1,1,1,S]."""
    b = torch.arange(batch, device=device).view(batch, 1, 1, 1)
    h = torch.zeros(1, 1, 1, 1, dtype=torch.long, device=device)
    q = (torch.arange(q_len, device=device) + offset).view(1, 1, q_len, 1)
    kv = torch.arange(kv_len, device=device).view(1, 1, 1, kv_len)
    return b, h, q, kv


def table_mask(leaf: masks.MaskNode, q_len: int, kv_len: int, offset: int = 0,
               device: torch.device | str | None = None) -> torch.Tensor:
    """A table mask [1, 1, T, S] (one declared with ``table``, e.g. BigBird's random rows): row i is True at the
    keys the table lists for query ``offset + i``. Built in numpy from Python ints, so an ONNX trace keeps it
    as a constant of the traced graph (one file holds one length's rows)."""
    import numpy as np

    t, s, o = int(q_len), int(kv_len), int(offset)
    rows = masks.MASKS[leaf.name or ""].table(o + t, s, **leaf.params)[o:]
    out = np.zeros((t, s), dtype=bool)
    for i, row in enumerate(rows):
        out[i, row] = True
    return torch.from_numpy(out).to(device).view(1, 1, t, s)


def _evaluate(node: masks.MaskNode, grids: tuple[torch.Tensor, ...], context: dict[str, Any],
              q_len: int, kv_len: int, offset: int) -> torch.Tensor:
    b, h, q, kv = grids
    if node.op == "leaf":
        mdef = masks.MASKS[node.name or "none"]
        if mdef.table is not None:
            return table_mask(node, q_len, kv_len, offset, q.device)
        return torch.as_tensor(mdef.predicate(b, h, q, kv, **node.params, **{k: context.get(k) for k in mdef.uses}))
    kids = [_evaluate(c, grids, context, q_len, kv_len, offset) for c in node.children]
    if node.op == "not":
        return masks.logical_not(kids[0])
    out = kids[0]
    for k in kids[1:]:
        out = (out & k) if node.op == "all" else (out | k)
    return out


def _last_query_under_causal(node: masks.MaskNode, q_len: int, kv_len: int, offset: int) -> bool:
    """One query at the last position (decoding a token with a KV cache) under a plain causal mask: every key j <=
    i, so the mask hides nothing. Not while tracing, where the sizes stand for any size."""
    return (q_len == 1 and offset == kv_len - 1 and mask_kind(node, cross=False) == "causal"
            and not torch.jit.is_tracing())


def mask_tensor(mask: Any, batch: int, q_len: int, kv_len: int, offset: int = 0, *,
                lengths: torch.Tensor | None = None, key_padding: torch.Tensor | None = None,
                doc_ids: torch.Tensor | None = None, device: torch.device | str | None = None) -> torch.Tensor | None:
    """The bool mask [B or 1, 1, T, S] of a mask value (True = visible), or None where it hides nothing (``mask:
    none``; ``causal`` for one query at the last position).

    ``mask`` is the node's ``mask`` param (a name, mapping, or parsed :class:`MaskNode`).
    """
    node = mask if isinstance(mask, masks.MaskNode) else masks.parse_mask(mask)
    if hides_nothing(node) or _last_query_under_causal(node, q_len, kv_len, offset):
        return None
    grids = index_grids(batch, q_len, kv_len, offset, device)
    context = {"lengths": lengths, "key_padding": Table(key_padding) if key_padding is not None else None,
               "doc_ids": Table(doc_ids) if doc_ids is not None else None, "q_len": offset + q_len, "kv_len": kv_len}
    out = _evaluate(node, grids, context, q_len, kv_len, offset)
    while out.dim() < 4:
        out = out.unsqueeze(0)
    return out.to(torch.bool)


def mask_at(node: masks.MaskNode, b: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor, *, q_len: int,
            kv_len: int, lengths: torch.Tensor | None = None, key_padding: torch.Tensor | None = None,
            doc_ids: torch.Tensor | None = None) -> torch.Tensor:
    """The mask predicate at broadcastable index tensors (absolute query positions), e.g. the tiles of a banded kernel.

    ``kv_idx`` must lie in [0, kv_len) (clamp first); table masks (BigBird's ``random`` rows) have no pointwise form.
    """
    tables = table_leaves(node)
    if tables:
        raise ValueError(f"the {tables[0].name} mask is a table over the whole sequence; it has no pointwise form")
    context = {"lengths": lengths, "key_padding": Table(key_padding) if key_padding is not None else None,
               "doc_ids": Table(doc_ids) if doc_ids is not None else None, "q_len": q_len, "kv_len": kv_len}
    h = torch.zeros((), dtype=torch.long, device=q_idx.device)
    return _evaluate(node, (b, h, q_idx, kv_idx), context, q_len, kv_len, 0).to(torch.bool)


def dense_matrix(mask: Any, q_len: int, kv_len: int | None = None, b: int = 0, **inputs: torch.Tensor) -> torch.Tensor:
    """The [T, S] bool matrix of batch row ``b`` from the tensor path (for comparisons with ``dense_mask``)."""
    kv_len = q_len if kv_len is None else kv_len
    batch = next((int(t.shape[0]) for t in inputs.values()), b + 1)
    out = mask_tensor(mask, batch, q_len, kv_len, **inputs)
    if out is None:
        return torch.ones(q_len, kv_len, dtype=torch.bool)
    return out.expand(batch, 1, q_len, kv_len)[b, 0]
