"""Query tiles inside one document run: which keys each block of queries needs (plain Python, no tensors).

A run of ``L`` tokens is cut into chunks of ``T`` positions. Query chunk ``c`` (positions ``[cT, cT + T)`` of the run)
needs only the keys its mask can reach: with the reach ``(left, right)`` of the mask's other conjuncts (every visible
pair has ``i - left <= j <= i + right``; see :func:`nngraph.attention.analysis.key_reach`) that is the key chunks from
``floor((cT - left) / T)`` to ``ceil((cT + T - 1 + right + 1) / T)``, clipped to the run. Causal (``right = 0``, no left
bound): chunk c needs key chunks ``0..c`` — the strictly-upper blocks are never computed, ``(n + 1) / 2n`` of the
``L²`` pairs for ``n`` chunks; a causal sliding window of ``w`` keys: about ``T + w`` keys per chunk instead of ``L``.
Key ranges are whole chunks (a few masked keys more) so each key range is a concatenation of chunks, whose
backward is a split — no zero-filled full-size gradient per tile.
"""

from __future__ import annotations

from typing import Any

Tile = tuple[int, int, int]  # (query chunk, first key chunk, end key chunk)


def _pow2_floor(x: float) -> int:
    p = 1
    while p * 2 <= x:
        p *= 2
    return p


def tile_size(length: int, reach: tuple[int | None, int | None], tier: dict[str, Any], whole_causal: bool) -> int:
    """Queries per tile for a run of ``length`` (0: the run is one call, untiled).

    Untiled: keys after a query may be visible with no bound (``right`` None: nothing to skip), the run fits one tile,
    or the run is exactly causal on SDPA's ``is_causal`` path and at least ``is_causal_from`` long (torch's CPU
    kernel then skips the key blocks above the diagonal itself, as well as the tiles do). Else a power of two near
    ``length / 8`` (and at most half a sliding window, so rounding key ranges to whole chunks wastes little),
    clamped to the profile's ``tile`` .. ``tile_max``."""
    left, right = reach
    lo, hi = int(tier.get("tile", 128)), int(tier.get("tile_max", 512))
    if right is None or length <= lo or (whole_causal and length >= int(tier.get("is_causal_from", 1024))):
        return 0
    want = length / 8 if left is None else min(length / 8, (left + 1) / 2)
    return min(hi, max(lo, _pow2_floor(want)))


def run_tiles(length: int, tile: int, reach: tuple[int | None, int | None]) -> list[Tile]:
    """Every query chunk of a run with the key chunks it needs (see the module doc)."""
    left, right = reach
    chunks = -(-length // tile)
    out = []
    for c in range(chunks):
        q0, q1 = c * tile, min(length, (c + 1) * tile)
        k0 = 0 if left is None else max(0, q0 - left) // tile
        k1 = chunks if right is None else min(chunks, -(-(q1 + right) // tile))
        out.append((c, k0, k1))
    return out


def by_shape(tiles: list[Tile], length: int, tile: int) -> dict[tuple[int, int], list[Tile]]:
    """Tiles of equal (queries, keys) shape, batched into one call each (interior tiles of a sliding window)."""
    def size(c0: int, c1: int) -> int:
        return min(length, c1 * tile) - c0 * tile

    out: dict[tuple[int, int], list[Tile]] = {}
    for t in tiles:
        out.setdefault((size(t[0], t[0] + 1), size(t[1], t[2])), []).append(t)
    return out
