"""The band of a mask (nngraph/attention/bands.py) is a sound over-approximation: every visible pair of the
exact predicate lies in the band or on a global row/column, and the band is as narrow as the mask allows."""

from __future__ import annotations

import pytest

from nngraph.attention import masks as masks
from nngraph.attention.analysis import band_of
from nngraph.attention.bands import Band

CASES = {
    "window causal": ({"type": "sliding_window", "window": 5}, Band(4, 0)),
    "window symmetric": ({"type": "sliding_window", "window": 6, "causal": False}, Band(3, 3)),
    "dilated": ({"type": "dilated", "window": 3, "dilation": 2}, Band(4, 0)),
    "local strided": ({"type": "strided", "stride": 4, "part": "local", "causal": False}, Band(3, 3)),
    "window or globals": ({"any": [{"type": "sliding_window", "window": 3}, {"type": "global_tokens", "positions": [0, 9]}]},
                          Band(2, 0, frozenset({0, 9}), frozenset({0, 9}))),
    "padding and window": ({"all": ["key_padding", {"type": "sliding_window", "window": 4}]}, Band(3, 0)),
    "narrowest of an all": ({"all": [{"type": "sliding_window", "window": 9}, {"type": "sliding_window", "window": 3}]},
                            Band(2, 0)),
}
UNBOUNDED = ["causal", "none", "document", {"type": "prefix_lm", "prefix": 3}, {"type": "strided", "stride": 4},
             {"type": "random", "per_row": 2}, {"not": {"type": "sliding_window", "window": 3}},
             {"any": ["causal", {"type": "sliding_window", "window": 3}]}]


@pytest.mark.parametrize("name", CASES)
def test_band_contains_every_visible_pair_and_is_tight(name):
    value, want = CASES[name]
    node = masks.parse_mask(value)
    band = band_of(node)
    assert band == want
    n = 16
    pred = masks.predicate(node)
    inside = lambda i, j: (band.left is not None and i - band.left <= j <= i + band.right) or i in band.rows or j in band.cols
    lengths, padding = [n], [[False] * n]
    for i in range(n):
        for j in range(n):
            if pred(0, 0, i, j, lengths=lengths, key_padding=padding, q_len=n, kv_len=n):
                assert inside(i, j), (i, j)
    if band.left is not None:  # tight: the band's extreme diagonals are reached
        i = n // 2
        assert pred(0, 0, i, i - band.left, lengths=lengths, key_padding=padding, q_len=n, kv_len=n)


@pytest.mark.parametrize("value", UNBOUNDED, ids=str)
def test_masks_without_a_band_say_so(value):
    assert band_of(masks.parse_mask(value)) is None
