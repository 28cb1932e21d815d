"""Emitter of the ``onnx-attention`` kernel (decision and mapping: :mod:`nngraph.compilers.kernels.onnx_attention`).

The projections, RoPE and the additive mask in torch, then the placeholder that becomes one opset-23 ``Attention``.
"""

from __future__ import annotations

from typing import Any

from nngraph.compilers.kernels.onnx_attention import explicit_mask, native_causal

from ..kernels.base import KVIO, Emitter, additive_mask, merge_heads, projected_with_bias, \
    reference_core, split_heads
from ..kernels.site import AttentionSite


class OnnxAttention(Emitter):
    """Q/K/V in the 3-D layout, the additive mask, ``Attention`` (q_num_heads, kv_num_heads, is_causal)."""

    def forward(self, module: Any, site: AttentionSite, io: KVIO | None, x: Any, context: Any = None,
                lengths: Any = None, key_padding: Any = None, doc_ids: Any = None, positions: Any = None) -> Any:
        past, offset, q, k, v, t, s, bias = projected_with_bias(module, site, io, x, context, positions)
        add = additive_mask(explicit_mask(site), bias, x.shape[0], t, s, offset, q.dtype, lengths, key_padding,
                            doc_ids)
        cfg = {"kernel": self.name, "heads": site.heads, "kv_heads": site.kv_heads, "scale": site.scale,
               "head_dim": site.head_dim, "dtype": site.dtype, "causal": native_causal(site),
               "slots": ["query", "key", "value", "mask", "past_key", "past_value"],
               "outputs": ["y", "present_key", "present_value"] if past is not None else ["y"]}
        return self.fused(module, site, io, past, cfg, {"query": q, "key": k, "value": v, "mask": add})

    def reference(self, cfg: dict[str, Any], t: dict[str, Any]) -> tuple[Any, ...]:
        import torch

        q = split_heads(t["query"], cfg["heads"])
        k, v = split_heads(t["key"], cfg["kv_heads"]), split_heads(t["value"], cfg["kv_heads"])
        if "past_key" in t:
            k, v = torch.cat((t["past_key"], k), dim=-2), torch.cat((t["past_value"], v), dim=-2)
        y = merge_heads(reference_core(q, k, v, cfg["scale"], t.get("mask"), cfg["causal"]))
        return (y, k, v) if "past_key" in t else (y,)

    def emit(self, inputs: dict[str, str], outputs: list[str], cfg: dict[str, Any], name: str) -> list[Any]:
        from onnx import helper

        ins = [inputs.get(k, "") for k in ("query", "key", "value", "mask", "past_key", "past_value")]
        while ins and not ins[-1]:
            ins.pop()
        return [helper.make_node("Attention", ins, outputs, name=name, q_num_heads=cfg["heads"],
                                 kv_num_heads=cfg["kv_heads"], scale=float(cfg["scale"]),
                                 is_causal=int(cfg["causal"]))]

    def value_info(self, inputs: dict[str, str], outputs: list[str], cfg: dict[str, Any]) -> list[Any]:
        """Hidden sizes of the 3-D Q/K/V/Y: ONNX's Attention shape inference needs them when the tracer's
        Reshape outputs are unknown (without them it infers a last dim of 0 and the checker rejects the
        next MatMul)."""
        from onnx import TensorProto, helper

        q, kv = cfg["heads"] * cfg["head_dim"], cfg["kv_heads"] * cfg["head_dim"]
        sizes = {inputs["query"]: q, inputs["key"]: kv, inputs["value"]: kv, outputs[0]: q}
        elem = {"float16": TensorProto.FLOAT16, "bfloat16": TensorProto.BFLOAT16, "float64": TensorProto.DOUBLE}.get(
            cfg.get("dtype", "float32"), TensorProto.FLOAT)
        return [helper.make_tensor_value_info(name, elem, [None, None, size])
                for name, size in sizes.items()]

