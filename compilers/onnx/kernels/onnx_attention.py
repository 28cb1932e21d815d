"""The standard ONNX ``Attention`` op (opset 23): one fused node, any runtime with opset 23 (ONNX Runtime >= 1.23 on CPU).

Mapping (checked against ORT 1.31 in tests/compilers/onnx/test_onnx_kernels.py):

* Q, K, V in the 3-D layout [B, T, H·d] / [B, S, G·d] with ``q_num_heads``/``kv_num_heads``
  (grouped-query attention natively); RoPE is applied in the graph before it;
* ``is_causal`` for a causal self-attention mask: top-left aligned without a past (T = S) and
  bottom-right with one, which is the reference's ``q_idx = past + i``;
* everything else -- key padding, windows, other predicates, ALiBi/T5/Shaw biases -- one additive
  float ``attn_mask`` [B|1, H|1, T, S] (ORT requires the full query axis), masked entries at the
  dtype's lowest value so a fully masked row is uniform as in the reference;
* ``past_key``/``past_value`` [B, G, P, d] and the ``present_*`` outputs with ``kv_cache``.

Not applicable: opset < 23; Shaw relative *values* (they need the probabilities).
"""

from __future__ import annotations

from typing import Any

from .base import KVIO, Kernel, TargetInfo, additive_mask, merge_heads, placeholder, \
    projected_with_bias, reference_core, register, split_heads
from .site import AttentionSite, ExportOptions


class OnnxAttention(Kernel):
    name = "onnx-attention"
    preference = 2   # rank in the measured preference order (see ORDER in kernels/__init__.py)
    doc = "the standard ONNX Attention op (opset 23): fused, grouped-query heads, is_causal, additive mask"
    onnx_op = "Attention"
    min_opset = 23   # the op's first version

    def check(self, site: AttentionSite, target: TargetInfo, options: ExportOptions) -> str | None:
        if options.opset < self.min_opset:
            return f"the ONNX Attention op needs opset {self.min_opset}, the export uses opset {options.opset}"
        if site.value_term:
            return (f"{site.position} relative values need the attention probabilities, which a fused op does "
                    "not expose")
        return None

    def why(self, site: AttentionSite, target: TargetInfo, options: ExportOptions) -> str:
        how = "is_causal" if self._native_causal(site) and not self._explicit(site) else \
            "is_causal + additive mask" if self._native_causal(site) else \
            "additive mask" if self._explicit(site) or site.has_bias else "no mask"
        return f"one standard fused node ({site.parts.describe()} as {how})"

    @staticmethod
    def _native_causal(site: AttentionSite) -> bool:
        return site.parts.causal and not site.cross

    @staticmethod
    def _explicit(site: AttentionSite) -> Any:
        """The mask conjuncts that go into the additive mask (None: nothing explicit)."""
        return site.parts.to_tensor(causal=site.cross, window=True, key_padding=True)

    def forward(self, module: Any, site: AttentionSite, io: KVIO | None, x: Any, context: Any = None,
                lengths: Any = None, key_padding: Any = None, doc_ids: Any = None) -> Any:
        past, offset, q, k, v, t, s, bias = projected_with_bias(module, site, io, x, context)
        add = additive_mask(self._explicit(site), bias, x.shape[0], t, s, offset, q.dtype, lengths, key_padding,
                            doc_ids)
        cfg = {"kernel": self.name, "heads": site.heads, "kv_heads": site.kv_heads, "scale": site.scale,
               "head_dim": site.head_dim, "dtype": site.dtype, "causal": self._native_causal(site), "slots": ["query", "key", "value", "mask", "past_key", "past_value"],
               "outputs": ["y", "present_key", "present_value"] if past is not None else ["y"]}
        outs = placeholder(cfg, {"query": q, "key": k, "value": v, "mask": add,
                                 "past_key": past[0] if past is not None else None,
                                 "past_value": past[1] if past is not None else None})
        if past is not None:
            io.present[site.node] = (outs[1], outs[2])
        return module.out(outs[0])

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


KERNEL = register(OnnxAttention())
