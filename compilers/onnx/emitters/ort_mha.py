"""Emitter of the ``ort-mha`` kernel (decision and mapping: :mod:`nngraph.compilers.kernels.ort_mha`).

The projections, RoPE, the key padding mask and the additive bias in torch, then the placeholder that becomes
one ``com.microsoft.MultiHeadAttention``.
"""

from __future__ import annotations

from typing import Any

from nngraph.compilers.kernels.ort_mha import explicit_mask

from ..kernels.base import KVIO, Emitter, additive_mask, merge_heads, projected_with_bias, \
    reference_core, split_heads
from ..kernels.site import AttentionSite

_LOWEST = -3.4028234663852886e38  # float32's lowest finite value


class OrtMultiHeadAttention(Emitter):
    """Query/key/value with RoPE applied, ``key_padding_mask``, ``attention_bias``, ``MultiHeadAttention``."""

    def forward(self, module: Any, site: AttentionSite, io: KVIO | None, x: Any, context: Any = None,
                lengths: Any = None, key_padding: Any = None, doc_ids: Any = None, positions: Any = None) -> Any:
        import torch

        past, offset, q, k, v, t, s, bias = projected_with_bias(module, site, io, x, context, positions)
        add = additive_mask(explicit_mask(site), bias, x.shape[0], t, s, offset, q.dtype, lengths, key_padding,
                            doc_ids, full=False)
        kpm = None
        if site.parts.key_padding == "lengths" and lengths is not None:
            kpm = lengths.to(torch.int32)
        elif site.parts.key_padding and key_padding is not None:
            kpm = (~key_padding).to(torch.int32)
        cfg = {"kernel": self.name, "heads": site.heads, "scale": site.scale,
               "causal": site.parts.causal and not site.cross,
               "slots": ["query", "key", "value", "key_padding_mask", "attention_bias", "past_key", "past_value"],
               "outputs": ["y", "present_key", "present_value"] if past is not None else ["y"]}
        return self.fused(module, site, io, past, cfg, {"query": q, "key": k, "value": v, "key_padding_mask": kpm,
                                                       "attention_bias": add})

    def reference(self, cfg: dict[str, Any], t: dict[str, Any]) -> tuple[Any, ...]:
        import torch

        h = cfg["heads"]
        q, k, v = split_heads(t["query"], h), split_heads(t["key"], h), split_heads(t["value"], h)
        if "past_key" in t:
            k, v = torch.cat((t["past_key"], k), dim=-2), torch.cat((t["past_value"], v), dim=-2)
        add = t.get("attention_bias")
        kpm = t.get("key_padding_mask")
        if kpm is not None:
            s = k.shape[-2]
            keep = (torch.arange(s).view(1, s) < kpm.view(-1, 1)) if kpm.dim() == 1 else kpm.bool()
            pad = torch.where(keep, 0.0, _LOWEST).to(q.dtype).view(keep.shape[0], 1, 1, s)
            add = pad if add is None else add + pad
        y = merge_heads(reference_core(q, k, v, cfg["scale"], add, cfg["causal"]))
        return (y, k, v) if "past_key" in t else (y,)

    def emit(self, inputs: dict[str, str], outputs: list[str], cfg: dict[str, Any], name: str) -> list[Any]:
        from onnx import helper

        ins = [inputs.get(k, "") for k in ("query", "key", "value", "bias", "key_padding_mask", "attention_bias",
                                           "past_key", "past_value")]
        while ins and not ins[-1]:
            ins.pop()
        return [helper.make_node("MultiHeadAttention", ins, outputs, name=name, domain="com.microsoft",
                                 num_heads=cfg["heads"], scale=float(cfg["scale"]), unidirectional=int(cfg["causal"]),
                                 mask_filter_value=_LOWEST)]

