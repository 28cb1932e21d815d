"""Where a mask can be non-zero: a band around the diagonal plus a few global rows and columns.

A banded attention kernel computes each block of queries against only the keys that can be
visible to it, so it needs a *sound over-approximation* of the mask: every visible pair
(i, j) must satisfy ``i - left <= j <= i + right`` or ``i in rows`` or ``j in cols``. Pairs
inside that set are still checked with the exact predicate; pairs outside it are skipped.

Each mask states its own reach at registration (``register_mask(..., reach=...)``); the
combinators follow set algebra:

* ``any`` (union): every child must be bounded; the band widens to the widest child's, the
  rows and columns are united;
* ``all`` (intersection): the result lies inside each bounded child, so the narrowest one is
  kept (a child with no reach, such as key padding or causal, only removes pairs);
* ``not`` and unbounded leaves (causal, none, document, prefix-LM, random): no band.

Sliding window (Longformer, Mistral; seed 002, "Global and Local Attention") is the band
``(window - 1, 0)`` causal or ``(window // 2, window // 2)`` symmetric; global tokens are rows
and columns with no band.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Band:
    """Pairs ``i - left <= j <= i + right`` (``left is None``: no band pairs) plus ``rows`` and ``cols``."""

    left: int | None = None
    right: int | None = None
    rows: frozenset[int] = frozenset()
    cols: frozenset[int] = frozenset()

    @property
    def width(self) -> int:
        """Keys per query in the band (0 without a band)."""
        return 0 if self.left is None else self.left + (self.right or 0) + 1

    def size(self) -> int:
        """A rough measure of how much the band admits (for picking the narrowest of an ``all``)."""
        return self.width + 1000 * (len(self.rows) + len(self.cols))


def window_reach(window: int, causal: bool = True, step: int = 1) -> Band:
    """The band of a (dilated) sliding window: causal ``0 <= i-j < window·step``, symmetric ``|i-j| <= (window//2)·step``."""
    if causal:
        return Band(max(0, (window - 1) * step), 0)
    reach = (window // 2) * step
    return Band(reach, reach)


def union_of(bands: list[Band]) -> Band:
    """The band holding every pair any of ``bands`` holds (the widest reach each side, all global rows/columns)."""
    present = [b for b in bands if b.left is not None]
    left = max((b.left for b in present), default=None)
    right = max((b.right or 0 for b in present), default=None) if present else None
    return Band(left, right, frozenset().union(*(b.rows for b in bands)), frozenset().union(*(b.cols for b in bands)))


#: tile widths are rounded up to a multiple of this many keys (the extra keys are masked like any
#: other pair outside the band): softmax and GEMM kernels then run whole SIMD rows — measured ~7%
#: faster for 319 → 320 keys per tile on this project's CPUs
TILE_KEY_ALIGN = 16


def tile_width(chunk: int, band: Band) -> int:
    """Keys a tile of ``chunk`` queries is scored against: ``chunk + left + right``, rounded up to TILE_KEY_ALIGN."""
    keys = chunk + (band.left or 0) + (band.right or 0)
    return -(-keys // TILE_KEY_ALIGN) * TILE_KEY_ALIGN
