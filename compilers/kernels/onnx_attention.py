"""Kernel: the standard ONNX ``Attention`` op — one fused node, any runtime with opset 23 (ORT >= 1.23 on CPU).

Mapping (emitter: :mod:`nngraph.compilers.onnx.emitters.onnx_attention`; checked against ORT 1.31 in
tests/compilers/onnx/test_onnx_kernels.py):

* Q, K, V in the 3-D layout [B, T, H·d] / [B, S, G·d] with ``q_num_heads``/``kv_num_heads``
  (grouped-query attention natively); RoPE is applied in the graph before it;
* ``is_causal`` for a causal self-attention mask: top-left aligned without a past (T = S) and
  bottom-right with one, which is the reference's ``q_idx = past + i``;
* everything else -- key padding, windows, other predicates, ALiBi/T5/Shaw biases -- one additive
  float ``attn_mask`` [B|1, H|1, T, S] (ORT requires the full query axis), masked entries at the
  dtype's lowest value so a fully masked row is uniform as in the reference;
* ``past_key``/``past_value`` [B, G, P, d] and the ``present_*`` outputs with ``kv_cache``.

Not applicable: opset < 23; Shaw relative *values* (they need the probabilities).
Preference: third (ahead of MultiHeadAttention when the export expects sequences shorter than 512).
"""

from __future__ import annotations

from typing import Any

from . import KernelDef, register_kernel

MIN_OPSET = 23  # the op's first version


def native_causal(site: Any) -> bool:
    """A causal self-attention mask: the op's ``is_causal``."""
    return site.parts.causal and not site.cross


def explicit_mask(site: Any) -> Any:
    """The mask conjuncts that go into the additive mask (None: nothing explicit)."""
    return site.parts.to_tensor(causal=site.cross, window=True, key_padding=True)


def _check(ctx):
    site, options = ctx.site, ctx.options
    if options.opset < MIN_OPSET:
        return f"the ONNX Attention op needs opset {MIN_OPSET}, the export uses opset {options.opset}"
    if why := site.row_ids_unserved(options):
        return why
    if site.value_term:
        return (f"{site.position} relative values need the attention probabilities, which a fused op does "
                "not expose")
    return None


def _why(ctx):
    site = ctx.site
    how = "is_causal" if native_causal(site) and not explicit_mask(site) else \
        "is_causal + additive mask" if native_causal(site) else \
        "additive mask" if explicit_mask(site) or site.has_bias else "no mask"
    return f"one standard fused node ({site.parts.describe()} as {how})"


KERNEL = register_kernel(KernelDef(
    "onnx-attention", "the standard ONNX Attention op (opset 23): fused, grouped-query heads, is_causal, additive mask",
    order=12, check=_check, why=_why, runtime="onnxruntime", onnx_op="Attention",
    min_opset=MIN_OPSET, emit="nngraph.compilers.onnx.emitters.onnx_attention:OnnxAttention"))
