"""Kernel: ORT's contrib ``com.microsoft.MultiHeadAttention`` — fused multi-head attention (ORT CPU and CUDA).

Mapping (emitter: :mod:`nngraph.compilers.onnx.emitters.ort_mha`; checked against ORT 1.31 in
tests/compilers/onnx/test_onnx_kernels.py):

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
contrib ops (``onnx``). Preference: second (BERT at seq 2048 on ORT CPU: 849 ms, Attention 886,
decomposed 999); below an expected length of 512 the exporter puts the opset-23 Attention first.
"""

from __future__ import annotations

from typing import Any

from . import KernelDef, register_kernel


def explicit_mask(site: Any) -> Any:
    """The mask conjuncts that go into ``attention_bias`` (causal only for cross-attention; None: nothing)."""
    return site.parts.to_tensor(causal=site.cross, window=True)


def _check(ctx):
    site, target = ctx.site, ctx.target
    if target.runtime != "onnxruntime":
        return f"a com.microsoft contrib op: target {target.name} promises standard ONNX ops only"
    if site.kv_heads != site.heads:
        return (f"no grouped-query support: {site.kv_heads} key/value heads for {site.heads} query heads "
                "(K/V would be repeated)")
    if why := site.row_ids_unserved(ctx.options):
        return why
    if site.value_term:
        return (f"{site.position} relative values need the attention probabilities, which a fused op does "
                "not expose")
    if site.dtype not in ("float32", "float16"):
        return f"runs float32/float16, the node computes in {site.dtype}"
    return None


def _why(ctx):
    site = ctx.site
    native = [n for n, ok in (("unidirectional", site.parts.causal and not site.cross),
                              ("key_padding_mask", bool(site.parts.key_padding))) if ok]
    bias = explicit_mask(site) is not None or site.has_bias
    how = " + ".join(native + (["attention_bias"] if bias else [])) or "no mask"
    return f"fused multi-head attention ({site.parts.describe()} as {how})"


KERNEL = register_kernel(KernelDef(
    "ort-mha", "ONNX Runtime contrib MultiHeadAttention: fused, native causal and key padding, additive bias",
    order=11, check=_check, why=_why, runtime="onnxruntime",
    onnx_op="com.microsoft.MultiHeadAttention", emit="nngraph.compilers.onnx.emitters.ort_mha:OrtMultiHeadAttention"))
