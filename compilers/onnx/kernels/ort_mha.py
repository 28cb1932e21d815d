"""ONNX Runtime's contrib ``com.microsoft.MultiHeadAttention``: fused multi-head attention (ORT CPU and CUDA).

Mapping (checked against ORT 1.31 in tests/compilers/onnx/test_onnx_kernels.py):

* query [B, T, H·d], key/value [B, S, H·d] (RoPE applied in the graph first);
* ``unidirectional=1`` for a causal *self*-attention mask (bottom-right with a past, as the
  reference); causal cross-attention goes into the bias instead (ORT aligns it differently);
* key padding natively: ``lengths`` as an int32 [B] ``key_padding_mask`` (key lengths), a
  ``key_padding`` [B, S] bool input (True = padding) as int32 1 = keep; ``mask_filter_value`` is the
  lowest float so a fully padded row is uniform, as in the reference;
* windows, other predicates and ALiBi/T5/Shaw-key biases: one additive ``attention_bias``
  [B|1, H|1, T, S];
* ``past_key``/``past_value`` [B, H, P, d] and the present outputs with ``kv_cache``.

Not applicable: grouped-query attention (``kv_heads < heads``: MultiHeadAttention has no
kv-head count; K/V would have to be repeated), Shaw relative values, targets without ORT's
contrib ops (``onnx``).
"""

from __future__ import annotations

from typing import Any

from .base import KVIO, Kernel, TargetInfo, additive_mask, merge_heads, placeholder, \
    projected_with_bias, reference_core, register, split_heads
from .site import AttentionSite, ExportOptions

_LOWEST = -3.4028234663852886e38  # float32's lowest finite value


class OrtMultiHeadAttention(Kernel):
    name = "ort-mha"
    preference = 1   # rank in the measured preference order (see ORDER in kernels/__init__.py)
    doc = "ONNX Runtime contrib MultiHeadAttention: fused, native causal and key padding, additive bias"
    onnx_op = "com.microsoft.MultiHeadAttention"

    def check(self, site: AttentionSite, target: TargetInfo, options: ExportOptions) -> str | None:
        if target.runtime != "onnxruntime":
            return f"a com.microsoft contrib op: target {target.name} promises standard ONNX ops only"
        if site.kv_heads != site.heads:
            return (f"no grouped-query support: {site.kv_heads} key/value heads for {site.heads} query heads "
                    "(K/V would be repeated)")
        if site.value_term:
            return (f"{site.position} relative values need the attention probabilities, which a fused op does "
                    "not expose")
        if site.dtype not in ("float32", "float16"):
            return f"runs float32/float16, the node computes in {site.dtype}"
        return None

    def why(self, site: AttentionSite, target: TargetInfo, options: ExportOptions) -> str:
        native = [n for n, ok in (("unidirectional", site.parts.causal and not site.cross),
                                  ("key_padding_mask", bool(site.parts.key_padding))) if ok]
        bias = self._explicit(site) is not None or site.has_bias
        how = " + ".join(native + (["attention_bias"] if bias else [])) or "no mask"
        return f"fused multi-head attention ({site.parts.describe()} as {how})"

    @staticmethod
    def _explicit(site: AttentionSite) -> Any:
        return site.parts.to_tensor(causal=site.cross, window=True)

    def forward(self, module: Any, site: AttentionSite, io: KVIO | None, x: Any, context: Any = None,
                lengths: Any = None, key_padding: Any = None, doc_ids: Any = None) -> Any:
        import torch

        past, offset, q, k, v, t, s, bias = projected_with_bias(module, site, io, x, context)
        add = additive_mask(self._explicit(site), bias, x.shape[0], t, s, offset, q.dtype, lengths, key_padding,
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
        outs = placeholder(cfg, {"query": q, "key": k, "value": v,
                                 "key_padding_mask": kpm, "attention_bias": add,
                                 "past_key": past[0] if past is not None else None,
                                 "past_value": past[1] if past is not None else None})
        if past is not None:
            io.present[site.node] = (outs[1], outs[2])
        return module.out(outs[0])

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


KERNEL = register(OrtMultiHeadAttention())
