"""ONNX Runtime's contrib ``com.microsoft.GroupQueryAttention``: causal self-attention with rotary and a local window built in.

The fastest ORT CPU kernel for decoders: it never materializes a causal mask, applies RoPE
itself from cos/sin caches, and takes fewer key/value heads natively. Mapping (checked against
ORT 1.31 in tests/compilers/onnx/test_onnx_kernels.py):

* query [B, T, H·d], key/value [B, T, G·d] *before* RoPE; ``do_rotary=1`` with ``cos_cache`` /
  ``sin_cache`` [P + T, r/2] computed in the graph from the node's RoPE parameters (NTK/YaRN
  frequencies and YaRN's attention factor included; rotate-half layout = ``rotary_interleaved=0``;
  partial rotary r < d);
* always causal; a causal ``sliding_window`` w -> ``local_window_size`` = w;
* key padding from ``lengths`` (right padding) -> ``seqlens_k`` = lengths - 1, else P + T - 1;
  ``total_sequence_length`` = P + T;
* ALiBi/T5/Shaw-key biases -> ``attention_bias`` [1|B, H, T, P + T];
* ``past_key``/``past_value`` [B, G, P, d] and the present outputs with ``kv_cache`` (ORT: a step
  of more than one token on a non-empty cache needs batch 1; generation feeds one token a step).

Not applicable: cross-attention, masks that are not causal (+ window, + ``lengths``), a
``key_padding`` [B, S] input (arbitrary padding), ``lengths`` with a KV cache, RoPE with a head_dim
that is not a multiple of 16 (an ORT requirement), Shaw with RoPE or Shaw values, CUDA with a
float32 model (ORT's CUDA kernel runs float16/bfloat16 only), targets without contrib ops.
"""

from __future__ import annotations

from typing import Any

from .base import KVIO, Kernel, TargetInfo, merge_heads, past_of, placeholder, projected3d, reference_core, register, \
    split_heads
from .site import AttentionSite, ExportOptions


class OrtGroupQueryAttention(Kernel):
    name = "ort-gqa"
    preference = 0   # rank in the measured preference order (see ORDER in kernels/__init__.py)
    doc = ("ONNX Runtime contrib GroupQueryAttention: causal without a materialized mask, RoPE and local window "
           "built in, grouped-query heads")
    onnx_op = "com.microsoft.GroupQueryAttention"

    def check(self, site: AttentionSite, target: TargetInfo, options: ExportOptions) -> str | None:
        p = site.parts
        if target.runtime != "onnxruntime":
            return f"a com.microsoft contrib op: target {target.name} promises standard ONNX ops only"
        if target.device == "cuda" and (target.dtype or site.dtype) not in ("float16", "bfloat16"):
            return f"ORT's CUDA GroupQueryAttention runs float16/bfloat16 only, the model is {target.dtype or site.dtype}"
        if site.dtype not in ("float32", "float16", "bfloat16"):
            return f"runs float32/float16/bfloat16, the node computes in {site.dtype}"
        if site.cross:
            return "self-attention only (keys and values come from the queries' sequence)"
        if not p.causal:
            return f"always causal, the mask is {p.describe()}"
        if p.rest is not None:
            return "the mask has parts beyond causal + sliding window + lengths padding (needs an explicit mask)"
        if p.key_padding == "key_padding":
            return "takes padding only as right-padded lengths (seqlens_k), not a key_padding [B, S] mask"
        if p.key_padding and options.kv_cache:
            return "key padding with a KV cache is not mapped (seqlens_k would change meaning between steps)"
        if site.pos.qk_transform and not site.rope:
            return f"position {site.position} transforms q/k in a way the op's rotary option does not express"
        if site.rope and site.head_dim % 16:
            return f"ORT's rotary needs head_dim divisible by 16, got {site.head_dim}"
        if site.rope and site.rotary_dim % 2:
            return f"rotary dim {site.rotary_dim} is odd"
        if site.value_term or (site.query_bias and site.rope):
            return (f"{site.position} biases need the rotated queries or the probabilities, which the fused op "
                    "keeps inside")
        return None

    def why(self, site: AttentionSite, target: TargetInfo, options: ExportOptions) -> str:
        bits = ["causal without a materialized mask"]
        if site.parts.window is not None:
            bits.append(f"local_window_size={site.parts.window}")
        if site.rope:
            bits.append("RoPE built in")
        if site.kv_heads != site.heads:
            bits.append(f"{site.kv_heads} kv heads natively")
        if site.parts.key_padding:
            bits.append("lengths as seqlens_k")
        if site.has_bias:
            bits.append(f"{site.position} as attention_bias")
        return "fastest on ORT CPU for decoders: " + ", ".join(bits)

    def forward(self, module: Any, site: AttentionSite, io: KVIO | None, x: Any, context: Any = None,
                lengths: Any = None, key_padding: Any = None, doc_ids: Any = None) -> Any:
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
            bias = module.score_bias(q_heads if q_heads is not None else q, q.shape[1], offset + k.shape[1], offset)
        cfg = {"kernel": self.name, "heads": site.heads, "kv_heads": site.kv_heads, "scale": site.scale,
               "window": site.parts.window if site.parts.window is not None else -1, "rotary": site.rope,
               "slots": ["query", "key", "value", "past_key", "past_value", "seqlens_k", "total_sequence_length",
                         "cos_cache", "sin_cache", "attention_bias"],
               "outputs": ["y", "present_key", "present_value"]}
        outs = placeholder(cfg, {"query": q, "key": k, "value": v,
                                 "past_key": past[0] if past is not None else None,
                                 "past_value": past[1] if past is not None else None,
                                 "seqlens_k": seqlens, "total_sequence_length": total.to(torch.int32),
                                 "cos_cache": cos, "sin_cache": sin, "attention_bias": bias})
        if past is not None:
            io.present[site.node] = (outs[1], outs[2])
        return module.out(outs[0])

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


KERNEL = register(OrtGroupQueryAttention())
