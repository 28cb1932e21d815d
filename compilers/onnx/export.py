"""Export a spec to ONNX: torch model -> TorchScript-exporter trace with lowered dynamic parts -> fused ops -> checked file.

:func:`export_graph` runs the stages of :mod:`.pipeline` (options -> plan -> build -> trace ->
placeholders -> fusions -> precision -> metadata -> verify -> write) on one :class:`.config.ExportConfig`;
an encoder-decoder with a KV cache is split first (:mod:`.seq2seq`) and each part runs them. In short:

1. build the torch model (:func:`nngraph.compilers.torch.build_module`), load ``weights``
   (:mod:`.weights`: weights files, training checkpoints with LoRA merged), eval mode;
2. choose an attention kernel per ``attention`` node for the target (:mod:`.kernels`);
3. trace with the TorchScript exporter (``torch.onnx.export(..., dynamo=False)``) while the
   dynamic parts are lowered (:mod:`.lowering`) and the missing/incorrect ATen translations are
   replaced (:mod:`.symbolics`); every symbolic input dim in ``dynamic`` (default: all) is a named
   dynamic axis;
4. convert to the export's opset -- the one asked, or by default the lowest that the chosen kernels,
   the lowerings and the fusions declare they need (:mod:`.opsets`: 17 for an MLP or a CNN, 23 with the
   standard ``Attention`` op) --, swap the placeholders for the chosen ONNX ops
   (:mod:`.rewrite`), write the metadata (:mod:`.metadata`), run
   ``onnx.checker.check_model(full_check=True)``;
5. ``verify`` (default on): run the file in ONNX Runtime and the torch model on random inputs at
   two sizes of every dynamic dim and compare (max abs diff <= ``tolerance``) -- a dim frozen by
   the trace shows up here, not in production;
6. write the file atomically (temp file + rename).

Why the TorchScript exporter and not ``dynamo=True``: on these machines (torch 2.13, 2 CPU cores)
the dynamo exporter takes 10-40 s per model (an MLP: ~10 s) against 0.3-5 s, which decides whether
every zoo spec can be exported in the test suite; the TorchScript exporter also lets a
``torch.autograd.Function`` name its own ONNX node (``symbolic``), which is how the fused
kernels and the SSM ``Scan`` are emitted exactly. Its limits (opset <= 20, frozen Python control
flow) are handled by the opset conversion and the lowering above, and checked by ``verify``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .axes import concrete, length_bound_symbols
from .config import ExportConfig
from .files import EXTERNAL_DATA_THRESHOLD
from .lowering import lowering_of
from .pipeline.options import check_kv as _check_kv
from .pipeline.plan import opset_for, plan
from .results import ExportError, ExportResult, Verification, explain_text

__all__ = ["EXTERNAL_DATA_THRESHOLD", "ExportConfig", "ExportError", "ExportResult", "Verification", "concrete",
           "explain_text", "export_graph", "export_spec", "length_bound_symbols", "lowering_of", "opset_for", "plan"]


def export_spec(spec: str | Path, output: str | Path | None, overrides: Sequence[str] | None = None,
                **kwargs: Any) -> ExportResult:
    """Load and validate ``spec`` (``overrides`` as ``--set``) and export it; see :func:`export_graph`."""
    from nngraph import load_spec

    graph = load_spec(spec, list(overrides or []))
    return export_graph(graph, output, spec_file=str(spec), **kwargs)


def export_graph(graph: Any, output: str | Path | None, config: ExportConfig | None = None, *, module: Any = None,
                 **options: Any) -> ExportResult:
    """Export validated ``graph`` to ``output`` (None: build and check only); see the module doc.

    ``config``: an :class:`ExportConfig`, or its fields as keyword ``options`` (not both);
    ``module``: an already built torch model of ``graph`` whose weights are exported (``weights``, if
    given, are loaded into it). The options:

    ``dynamic``: symbolic input dims that stay dynamic (default all); a dim left out is fixed at its
    ``dims`` size, which must then be given; ``dims``: sizes to trace at (default batch 3, the other
    dims 13, 11, 17, ...: values unlikely to equal a model constant); ``kv_cache``: add
    ``past.{i}.key/value`` inputs and ``present.{i}.key/value`` outputs per attention layer for
    incremental decoding; ``kernels``: force a kernel per node name (``*`` for all);
    ``fuse``: run the ONNX Runtime fusions of :mod:`.fusions` on the
    exported graph -- None: the target device's measured default set (ort-cpu: bias_gelu; ort-cuda: also
    skip_layer_norm, mha_bias), never for ``onnx``; True: that set; False: none; a list of fusion names:
    only those; ``dtype``: ``float16`` converts the file
    (:mod:`.precision`; float32 inputs/outputs; checked at ``tolerance`` default 1e-2 relative instead
    of 1e-4); ``external_data``: weights in ``<output>.data`` beside the file (None: when they exceed
    ``external_threshold`` bytes, default :data:`EXTERNAL_DATA_THRESHOLD` = protobuf's 2 GiB limit less
    128 MiB); ``expected_seq``: the sequence length the file will mostly run at -- one file serves every
    length, and where the fastest attention kernel differs by length (see
    :func:`nngraph.compilers.onnx.kernels.order_for`) this picks it (recorded in the metadata and ``--explain``).
    """
    if config is not None and options:
        raise TypeError("export_graph takes a config or keyword options, not both")
    cfg = config if config is not None else ExportConfig.of(options)
    if cfg.kv_cache and _cross_memory(graph):
        return _export_encoder_decoder(graph, output, cfg, module)
    from .pipeline import run

    return run(graph, output, cfg, module)


def _export_encoder_decoder(graph: Any, output: str | Path | None, cfg: ExportConfig, module: Any) -> ExportResult:
    """The decoder step's result (KV cache), with the encoder's (run once per source) as its ``encoder``."""
    from .seq2seq import export_seq2seq

    if output is None:
        raise ExportError("--kv-cache of an encoder-decoder writes two files: give -o")
    enc, dec = export_seq2seq(graph, output, cfg, module=module)
    dec.encoder = enc
    dec.notes.append(f"encoder (run once per source) written to {enc.path}")
    return dec


def _cross_memory(graph: Any) -> bool:
    """The graph has cross-attention on a memory it computes itself (an encoder-decoder to split)."""
    from .seq2seq import memory_of

    try:
        memory = memory_of(graph)
    except ValueError as exc:
        raise ExportError(f"--kv-cache: {exc}") from None
    return memory is not None and memory not in graph.inputs
