"""Emitter of the ``ort-gqa`` kernel (decision and mapping: :mod:`nngraph.compilers.kernels.ort_gqa`).

The projections before RoPE, ``seqlens_k`` / ``total_sequence_length`` and the rotary cos/sin caches in torch,
then the placeholder that becomes one ``com.microsoft.GroupQueryAttention``.
"""

from __future__ import annotations

from typing import Any

from ..kernels.base import KVIO, Emitter, merge_heads, past_of, projected3d, reference_core, split_heads
from ..kernels.site import AttentionSite


class OrtGroupQueryAttention(Emitter):
    """Query/key/value before RoPE, cos/sin caches, ``GroupQueryAttention`` (do_rotary, local_window_size)."""

    def forward(self, module: Any, site: AttentionSite, io: KVIO | None, x: Any, context: Any = None,
                lengths: Any = None, key_padding: Any = None, doc_ids: Any = None, positions: Any = None) -> Any:
        import torch

        past = past_of(io, site)
        batch = x.shape[0]
        q, k, v, q_heads = projected3d(module, site, x, None, 0, rope=False)
        new = torch._shape_as_tensor(x)[1]  # traced as Shape/Gather: dynamic in the exported graph
        total = new + torch._shape_as_tensor(past[0])[2] if past is not None else new
        if site.parts.key_padding == "lengths" and lengths is not None:
            seqlens = (lengths - 1).to(torch.int32)
        else:
            seqlens = (total - 1).to(torch.int32).expand(batch)
        cos = sin = None
        if site.rope:
            positions = torch.arange(total)  # 0 .. P+T-1, dynamic
            c, s_ = module.hooks.cos_sin(module, positions, q.dtype)  # the rotary encoding's torch hook
            half = site.rotary_dim // 2
            cos, sin = c[:, :half].contiguous(), s_[:, :half].contiguous()
        offset = past[0].shape[-2] if past is not None else 0
        bias = None
        if site.has_bias:
            ids = (positions, positions) if positions is not None else None  # no past here (refused by the check)
            bias = module.score_bias(q_heads if q_heads is not None else q, q.shape[1], offset + k.shape[1], offset,
                                     ids)
        cfg = {"kernel": self.name, "heads": site.heads, "kv_heads": site.kv_heads, "scale": site.scale,
               "window": site.parts.window if site.parts.window is not None else -1, "rotary": site.rope,
               "slots": ["query", "key", "value", "past_key", "past_value", "seqlens_k", "total_sequence_length",
                         "cos_cache", "sin_cache", "attention_bias"],
               "outputs": ["y", "present_key", "present_value"]}
        return self.fused(module, site, io, past, cfg, {
            "query": q, "key": k, "value": v, "seqlens_k": seqlens, "total_sequence_length": total.to(torch.int32),
            "cos_cache": cos, "sin_cache": sin, "attention_bias": bias})

    def reference(self, cfg: dict[str, Any], t: dict[str, Any]) -> tuple[Any, ...]:
        import torch

        from nngraph.compilers.torch.ops.attention_positions import rotate_half

        q, k = split_heads(t["query"], cfg["heads"]), split_heads(t["key"], cfg["kv_heads"])
        v = split_heads(t["value"], cfg["kv_heads"])
        past_len = t["past_key"].shape[-2] if "past_key" in t else 0
        if cfg["rotary"]:
            positions = torch.arange(q.shape[-2]) + past_len
            c, s = t["cos_cache"][positions], t["sin_cache"][positions]
            c, s = torch.cat((c, c), dim=-1), torch.cat((s, s), dim=-1)
            r = c.shape[-1]

            def rot(x: Any) -> Any:
                y = x[..., :r] * c + rotate_half(x[..., :r]) * s
                return torch.cat((y, x[..., r:]), dim=-1) if r < x.shape[-1] else y

            q, k = rot(q), rot(k)
        if "past_key" in t:
            k, v = torch.cat((t["past_key"], k), dim=-2), torch.cat((t["past_value"], v), dim=-2)
        window = cfg["window"] if cfg["window"] > 0 else None
        lengths = t["seqlens_k"].to(torch.int64) + 1
        y = merge_heads(reference_core(q, k, v, cfg["scale"], t.get("attention_bias"), True, window, lengths))
        return y, k, v

    def emit(self, inputs: dict[str, str], outputs: list[str], cfg: dict[str, Any], name: str) -> list[Any]:
        from onnx import helper

        ins = [inputs.get(k, "") for k in ("query", "key", "value", "past_key", "past_value", "seqlens_k",
                                           "total_sequence_length", "cos_cache", "sin_cache", "position_ids",
                                           "attention_bias")]
        while ins and not ins[-1]:
            ins.pop()
        return [helper.make_node("GroupQueryAttention", ins, outputs, name=name, domain="com.microsoft",
                                 num_heads=cfg["heads"], kv_num_heads=cfg["kv_heads"], scale=float(cfg["scale"]),
                                 do_rotary=int(cfg["rotary"]), rotary_interleaved=0,
                                 local_window_size=int(cfg["window"]))]

