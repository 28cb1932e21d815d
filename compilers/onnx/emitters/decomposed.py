"""Emitter of the ``decomposed`` kernel (decision: :mod:`nngraph.compilers.kernels.decomposed`): nothing is replaced.

The export traces :class:`nngraph.compilers.torch.ops.attention.Attention`'s own forward; with ``kv_cache`` keys
and values go through the same :class:`~nngraph.compilers.torch.ops.attention_cache.CacheSlot` the torch KV cache
uses (seeded with the past tensors, so positions continue at the past length).
"""

from __future__ import annotations

from typing import Any

from ..kernels.base import KVIO, Emitter, past_of
from ..kernels.site import AttentionSite


class Decomposed(Emitter):
    """The module's own forward (no placeholder)."""

    def forward(self, module: Any, site: AttentionSite, io: KVIO | None, x: Any, context: Any = None,
                lengths: Any = None, key_padding: Any = None, doc_ids: Any = None, positions: Any = None) -> Any:
        from nngraph.compilers.torch.ops.attention_cache import CacheSlot

        kwargs = {k: v for k, v in (("context", context), ("lengths", lengths), ("key_padding", key_padding),
                                    ("doc_ids", doc_ids), ("positions", positions)) if v is not None}
        past = past_of(io, site)
        if past is None:
            return type(module).forward(module, x, **kwargs)
        slot = CacheSlot(k=past[0], v=past[1], length=past[0].shape[-2])
        module.kv_cache = slot
        try:
            out = type(module).forward(module, x, **kwargs)
        finally:
            module.kv_cache = None
        io.present[site.node] = (slot.k, slot.v)
        return out

