"""Kernel: the decomposed ONNX export — the reference attention op by op (MatMul, Add, Where, Softmax, MatMul).

Always applies and is the oracle of the fused ONNX kernels. Nothing is replaced: the export traces
:class:`nngraph.compilers.torch.ops.attention.Attention`'s own forward, so masks come from the same
predicates, positions from the same RoPE/ALiBi/T5/Shaw code, and, with ``kv_cache``, keys and
values from the same cache slot the torch KV cache uses (emitter:
:mod:`nngraph.compilers.onnx.emitters.decomposed`). Preference: last (the fallback).
"""

from __future__ import annotations

from . import KernelDef, register_kernel

KERNEL = register_kernel(KernelDef(
    "decomposed", "the reference math as plain ONNX ops (MatMul, Add, Where, Softmax): runs anywhere, materializes "
    "the scores", order=13, check=lambda ctx: ctx.site.row_ids_unserved(ctx.options),
    why=lambda ctx: "the fallback: no fused kernel applies", runtime="onnxruntime", onnx_op="MatMul/Softmax",
    emit="nngraph.compilers.onnx.emitters.decomposed:Decomposed"))
