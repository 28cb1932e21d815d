"""Kernel: ORT's contrib ``com.microsoft.GroupQueryAttention`` — causal self-attention, rotary and local window built in.

The fastest ORT CPU kernel for decoders: it never materializes a causal mask, applies RoPE
itself from cos/sin caches, and takes fewer key/value heads natively. Mapping (emitter:
:mod:`nngraph.compilers.onnx.emitters.ort_gqa`; checked against ORT 1.31 in
tests/compilers/onnx/test_onnx_kernels.py):

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
``key_padding`` [B, S] input (arbitrary padding), ``lengths`` with a KV cache, RoPE with a
``positions`` input (the op rotates at its own positions), a head_dim that is not a multiple of 8, or
of 16 with RoPE, or rotated dims (partial rotary) not a multiple of 16 (ORT's own checks: ``head_size
must be a multiple of 8``, ``head_size shall be a multiple of 16`` at run time; every kernel × head_dim ×
mask kind is run in tests/compilers/onnx/test_ort_accepts.py), Shaw with RoPE or Shaw values, CUDA with a
float32 model (ORT's CUDA kernel runs float16/bfloat16 only), targets without contrib ops.
Preference: first (causal GPT-2 at seq 2048 on ORT CPU: 552 ms against 728-961 for the others).
"""

from __future__ import annotations

from . import KernelDef, register_kernel

#: ORT's GroupQueryAttention rejects other head sizes when the session runs (not when it is built)
HEAD_DIM_MULTIPLE = 8
ROTARY_HEAD_DIM_MULTIPLE = 16


def _check(ctx):
    site, target, options = ctx.site, ctx.target, ctx.options
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
    if site.rope and site.row_positions:
        return ("its rotary option turns token i at past length + i, not at per-row position ids "
                "(the positions input)")
    if why := site.row_ids_unserved(options):
        return why
    if site.head_dim % HEAD_DIM_MULTIPLE:
        return f"ORT's GroupQueryAttention needs head_dim divisible by {HEAD_DIM_MULTIPLE}, got {site.head_dim}"
    if site.rope and site.head_dim % ROTARY_HEAD_DIM_MULTIPLE:
        return f"ORT's rotary needs head_dim divisible by {ROTARY_HEAD_DIM_MULTIPLE}, got {site.head_dim}"
    if site.rope and site.rotary_dim % ROTARY_HEAD_DIM_MULTIPLE:  # cos_cache [P + T, r/2]: r/2 a multiple of 8
        return f"ORT's rotary needs the rotated dims divisible by {ROTARY_HEAD_DIM_MULTIPLE}, got {site.rotary_dim}"
    if site.value_term or (site.query_bias and site.rope):
        return (f"{site.position} biases need the rotated queries or the probabilities, which the fused op "
                "keeps inside")
    return None


def _why(ctx):
    site = ctx.site
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


KERNEL = register_kernel(KernelDef(
    "ort-gqa", "ONNX Runtime contrib GroupQueryAttention: causal without a materialized mask, RoPE and local window "
    "built in, grouped-query heads", order=10, check=_check, why=_why,
    runtime="onnxruntime", onnx_op="com.microsoft.GroupQueryAttention",
    emit="nngraph.compilers.onnx.emitters.ort_gqa:OrtGroupQueryAttention"))
