"""The decomposed kernel: the torch reference attention exported op by op (MatMul, Add, Where, Softmax, MatMul).

Always applies and is the oracle of the fused kernels. Nothing is replaced: the export traces
:class:`nngraph.compilers.torch.ops.attention.Attention`'s own forward, so masks come from the same
predicates, positions from the same RoPE/ALiBi/T5/Shaw code, and, with ``kv_cache``, keys and
values from the same :class:`~nngraph.compilers.torch.ops.attention_cache.CacheSlot` the torch KV cache
uses (seeded with the past tensors, so positions continue at the past length).
"""

from __future__ import annotations

from typing import Any

from .base import KVIO, Kernel, TargetInfo, past_of, register
from .site import AttentionSite, ExportOptions


class Decomposed(Kernel):
    name = "decomposed"
    preference = 3   # rank in the measured preference order (see ORDER in kernels/__init__.py)
    doc = "the reference math as plain ONNX ops (MatMul, Add, Where, Softmax): runs anywhere, materializes the scores"
    onnx_op = "MatMul/Softmax"

    def check(self, site: AttentionSite, target: TargetInfo, options: ExportOptions) -> str | None:
        return None

    def why(self, site: AttentionSite, target: TargetInfo, options: ExportOptions) -> str:
        return "the fallback: no fused kernel applies"

    def forward(self, module: Any, site: AttentionSite, io: KVIO | None, x: Any, context: Any = None,
                lengths: Any = None, key_padding: Any = None, doc_ids: Any = None) -> Any:
        from nngraph.compilers.torch.ops.attention_cache import CacheSlot

        kwargs = {k: v for k, v in (("context", context), ("lengths", lengths), ("key_padding", key_padding),
                                    ("doc_ids", doc_ids)) if v is not None}
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


KERNEL = register(Decomposed())
