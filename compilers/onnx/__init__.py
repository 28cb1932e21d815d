"""The ONNX back end: export every spec to ONNX with fused attention kernels, run it with ONNX Runtime, decode with a KV cache.

::

    from nngraph.compilers.onnx import export_spec, run_model, generate
    result = export_spec("specs/gpt_char.yaml", "gpt.onnx", target="ort-cpu", kv_cache=True)
    print(result.explain())                      # kernel per attention node, and why
    out = run_model("gpt.onnx", {"tokens": ids, **empty_past})
    tokens = generate("gpt.onnx", [[1, 2, 3]], max_new_tokens=20)   # greedy, KV cache as ONNX I/O

Modules: :mod:`.export` (the API: :func:`export_graph` with an :class:`.config.ExportConfig`),
:mod:`.pipeline` (the stages of one export, a module each: options -> plan -> build -> trace ->
placeholders -> fusions -> precision -> metadata -> verify -> write), :mod:`.results` (what an export
returns), :mod:`.kernels` (one module per attention kernel,
data-driven candidates with ``applies(node, target)``), :mod:`.lowering` (dynamic parts, one registration
per op: SSM scan, MoE dispatch, graph pooling, ...), :mod:`.symbolics` (ATen translations the exporter lacks),
:mod:`.opsets` (the lowest opset an export needs), :mod:`.rewrite` (opset conversion,
placeholders -> ONNX ops), :mod:`.metadata`, :mod:`.weights`
(weights files, training checkpoints, LoRA merge), :mod:`.runner` (ORT sessions and their options, input
files, checked feeds), :mod:`.generate` (greedy / top-k decoding), :mod:`.verify` (ORT vs torch),
:mod:`.fusions` (ORT contrib fusions on the exported graph: SkipLayerNormalization, BiasGelu/FastGelu,
packed QKV), :mod:`.seq2seq` (encoder-decoder: encoder file + cached decoder step), :mod:`.precision`
(float16 export); weights over 2 GB go to an external data file beside the model (:mod:`.export`).

Importing this package does not import torch, onnx or onnxruntime (the lowering pass asks its
:mod:`.kernels` for the ONNX kernels' verdicts); the functions below import what they need.
"""

from __future__ import annotations

from typing import Any

from .kernels import TARGETS, attention_candidates
from .opsets import MAX_OPSET, MIN_OPSET

__all__ = ["MAX_OPSET", "MIN_OPSET", "TARGETS", "attention_candidates", "export_graph", "export_spec", "generate",
           "read_metadata", "run_model"]


def export_spec(*args: Any, **kwargs: Any) -> Any:
    """See :func:`nngraph.compilers.onnx.export.export_spec`."""
    from .export import export_spec as fn

    return fn(*args, **kwargs)


def export_graph(*args: Any, **kwargs: Any) -> Any:
    """See :func:`nngraph.compilers.onnx.export.export_graph`."""
    from .export import export_graph as fn

    return fn(*args, **kwargs)


def run_model(*args: Any, **kwargs: Any) -> Any:
    """See :func:`nngraph.compilers.onnx.runner.run_model`."""
    from .runner import run_model as fn

    return fn(*args, **kwargs)


def generate(*args: Any, **kwargs: Any) -> Any:
    """See :func:`nngraph.compilers.onnx.generate.generate`."""
    from .generate import generate as fn

    return fn(*args, **kwargs)


def read_metadata(source: Any) -> dict[str, Any]:
    """See :func:`nngraph.compilers.onnx.metadata.read_metadata`."""
    from .metadata import read_metadata as fn

    return fn(source)
