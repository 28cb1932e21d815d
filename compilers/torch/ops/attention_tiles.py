"""What the banded local kernel's two tile loops share: where each computed key column sits, and the position
encoding's terms at the given query/key pairs.

Used by :mod:`.attention_kernels_local` (all tiles batched) and :mod:`.attention_kernels_local_loop` (tiles in
place, one at a time), which is why it is a module of its own below both.
"""

from __future__ import annotations

from typing import Any

import torch


def position_terms(m: Any, q: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor) -> tuple[Any, Any]:
    """The position's score term at the given pairs and its value function, for scaled queries ``q`` [..., C, d].

    ``q_idx`` [..., C, 1] and ``kv_idx`` [..., 1, W] are absolute positions (leading dims as q's after B, H).
    Returns (score term broadcastable to [B, H, ..., C, W] or None, ``values(p) -> Σ_j p_ij a^V_ij`` or None).
    """
    return m.hooks.tile_terms(m, q, q_idx, kv_idx)


def key_positions(grids: tuple[torch.Tensor, torch.Tensor], cols: torch.Tensor) -> torch.Tensor:
    """Absolute key position of every computed column [1, nT, 1, W+P]: the band's keys, then the global columns."""
    if not cols.numel():
        return grids[1]
    n_tiles = grids[1].shape[1]
    return torch.cat([grids[1], cols.view(1, 1, 1, -1).expand(1, n_tiles, 1, -1)], -1)
