"""Export lowering of attention masks: a BigBird ``random`` mask becomes a constant of the traced graph.

The torch back end builds the random rows with ``zeros`` + ``scatter_`` over the run-time lengths,
which the TorchScript exporter cannot translate (a ``UInt`` value kind); the export fixes the sequence
dims of such nodes anyway (:func:`nngraph.compilers.onnx.axes.length_bound_symbols`), so the rows are
drawn for the traced lengths as plain ints and stored as one constant [1, 1, T, S].

Why this one still swaps a module global: ``random_mask`` lives in
:mod:`nngraph.compilers.torch.ops.attention_masks`, which the attention-kernel registry work owns
(branch ``attn``, where the ``random`` mask becomes a table-based mask registration); once that module
declares ``random_mask`` ``@replaceable`` (:mod:`nngraph.compilers.torch.trace_hooks`), this becomes
``@lowering("random_mask", replaces_function=True)`` like :func:`.graph_nn.global_pool`.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator


def random_mask(q_len: Any, kv_len: Any, per_row: int, seed: int, offset: Any = 0, device: Any = None) -> Any:
    """Drop-in for :func:`nngraph.compilers.torch.ops.attention_masks.random_mask` while exporting."""
    import numpy as np
    import torch

    from nngraph.ops._attn_masks import random_table

    t, s, o = int(q_len), int(kv_len), int(offset)
    out = np.zeros((t, s), dtype=bool)
    for i, row in enumerate(random_table(o + t, s, per_row, seed)[o:]):
        out[i, row] = True
    return torch.from_numpy(out).view(1, 1, t, s)  # a constant of the traced graph


@contextlib.contextmanager
def random_mask_as_constant() -> Iterator[None]:
    """:func:`random_mask` in place of the torch back end's for the block (see the module doc)."""
    from nngraph.compilers.torch.ops import attention_masks

    saved = attention_masks.random_mask
    attention_masks.random_mask = random_mask
    try:
        yield
    finally:
        attention_masks.random_mask = saved
