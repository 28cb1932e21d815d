"""Block density of a mask: the fraction of (query block, key block) tiles with at least one visible pair.

Evaluated exactly on the registered mask predicates with numpy index grids (the predicates are written
with ``&``, ``|``, comparisons and ``logical_not``, which work on numpy arrays as on tensors), so the
planner needs no torch. FlexAttention skips the empty tiles; its cost scales with this density.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from nngraph.attention import analysis
from nngraph.attention import masks as masks


def _visible(node: masks.MaskNode, lo: int, hi: int, kv_len: int) -> np.ndarray:
    """The bool [hi - lo, kv_len] visibility of a data-free mask for query rows lo..hi-1."""
    if node.op == "leaf":
        mdef = masks.MASKS[node.name or "none"]
        if mdef.table is not None:
            out = np.zeros((hi - lo, kv_len), dtype=bool)
            for i, row in enumerate(mdef.table(hi, kv_len, **node.params)[lo:]):
                out[i, row] = True
            return out
        q, kv = np.arange(lo, hi).reshape(-1, 1), np.arange(kv_len).reshape(1, -1)
        ctx = {"q_len": hi, "kv_len": kv_len}
        got = mdef.predicate(0, 0, q, kv, **node.params, **{k: ctx.get(k) for k in mdef.uses})
        return np.broadcast_to(np.asarray(got, dtype=bool), (hi - lo, kv_len))
    kids = [_visible(c, lo, hi, kv_len) for c in node.children]
    if node.op == "not":
        return ~kids[0]
    out = kids[0]
    for k in kids[1:]:
        out = (out & k) if node.op == "all" else (out | k)
    return out


@functools.lru_cache(maxsize=512)
def _density(mask_key: str, q_len: int, kv_len: int, block: int) -> float:
    node = masks.parse_mask(_MASKS_BY_KEY[mask_key])
    nq, nk = -(-q_len // block), -(-kv_len // block)
    rows = max(1, (1 << 22) // max(1, kv_len * block)) * block  # ~4M mask elements per evaluation
    hit = 0
    for lo in range(0, q_len, rows):
        hi = min(q_len, lo + rows)
        m = _visible(node, lo, hi, kv_len)
        pad_q, pad_k = (-(hi - lo)) % block, nk * block - kv_len
        if pad_q or pad_k:
            m = np.pad(m, ((0, pad_q), (0, pad_k)))
        hit += int(m.reshape(-1, block, nk, block).any(3).any(1).sum())
    return hit / (nq * nk)


_MASKS_BY_KEY: dict[str, Any] = {}


def block_density(facts: Any, kv_len: int, block: int = 128, cap: int = 4096) -> float:
    """Fraction of block×block tiles with a visible pair at ``kv_len`` (an upper bound).

    Leaves that read graph inputs (key padding, documents) are unknown until run time: they are
    taken as "everything visible" (or "nothing" under a ``not``), which bounds the density from
    above. Evaluated at ``cap`` for longer sequences (sparse patterns only get sparser); 1.0 for
    no mask."""
    if facts.mask_kind == "none" or facts.mask is None:
        return 1.0
    bound = analysis.visible_bound(facts.mask)
    if analysis.hides_nothing(bound):
        return 1.0
    key = repr(bound)
    _MASKS_BY_KEY.setdefault(key, analysis.mask_value(bound))
    n = min(kv_len, cap)
    q = n if not isinstance(facts.q_len, int) or not facts.cross else min(facts.q_len, cap)
    return _density(key, q, n, block)
