"""Stage 4, trace: the TorchScript exporter records the wrapped model with the lowerings installed.

Traced at the trace sizes (:func:`nngraph.compilers.onnx.inputs.trace_sizes`); when that fails (e.g. a
trace length beyond a position table) once more at the small default sizes. Every dim left dynamic is
a named dynamic axis; the exporter's opset is at most :data:`nngraph.compilers.onnx.rewrite.MAX_TORCHSCRIPT_OPSET`
(the placeholders stage converts to the export's own).
"""

from __future__ import annotations

import io
import warnings
from typing import Any

from ..axes import _batch_symbol, _dynamic_axes, concrete
from ..results import ExportError

#: the cached length of the sample KV cache: not a trace size (batch 3, primes from 11): the tracer keys sizes by value
PAST_LEN = 7


def trace(s: Any) -> None:
    """``s.model``: the traced ONNX model (placeholders in it), at the first sizes that trace."""
    import onnx

    from ..inputs import default_sizes

    graph, dims = s.graph, s.config.dims
    s.batch_sym = _batch_symbol(graph, s.names)
    attempts = [s.sizes] + ([default_sizes(graph, dims)] if default_sizes(graph, dims) != s.sizes else [])
    for attempt, sizes in enumerate(attempts):
        try:
            data = _export(s, sizes)
            s.sizes = sizes
            break
        except Exception as exc:  # noqa: BLE001 - retry at the small default sizes, then name the spec and the cause
            if attempt + 1 < len(attempts):
                continue
            raise ExportError(f"exporting '{graph.name}' failed: {type(exc).__name__}: {first_line(exc)}") from exc
    s.notes += [f"dim '{d}' is fixed at {s.sizes[d]}: {why}" for d, why in s.frozen.items() if d not in s.dynamic]
    s.model = onnx.load_from_string(data)


def _example(s: Any, sizes: dict[str, int]) -> list[Any]:
    """The positional sample inputs at ``sizes`` (+ random past keys/values of :data:`PAST_LEN` positions)."""
    import torch

    from ..inputs import sample_inputs

    cfg = s.config
    example = sample_inputs(s.graph, sizes, cfg.seed, cfg.include_optional)
    if cfg.kv_cache:  # a key_padding input describes the past keys too: [batch, past + seq]
        example.update(_total_inputs(s, sizes, example))
    args = [example[n] for n in s.names]
    if cfg.kv_cache:
        b = concrete(s.graph.inputs[s.names[0]].type.shape[0], sizes)
        for layer in s.kv_layers:
            shape = (b, layer["kv_heads"], PAST_LEN, layer["head_dim"])
            args += [torch.randn(shape), torch.randn(shape)]
    return args


def _total_inputs(s: Any, sizes: dict[str, int], example: dict[str, Any]) -> dict[str, Any]:
    """The ``key_padding`` inputs (:mod:`nngraph.compilers.decoding`) sampled at seq + :data:`PAST_LEN` keys."""
    from nngraph.compilers.decoding import input_roles

    from ..inputs import sample_inputs

    names = [n for n, role in input_roles(s.graph).items() if role == "key_padding" and n in example]
    seq = s.graph.inputs[s.names[0]].type.shape[1]
    if not names or not isinstance(seq, str):
        return {}
    longer = sample_inputs(s.graph, {**sizes, seq: concrete(seq, sizes) + PAST_LEN}, s.config.seed,
                           s.config.include_optional)
    return {n: longer[n] for n in names}


def _export(s: Any, sizes: dict[str, int]) -> bytes:
    """One ``torch.onnx.export`` of the wrapper at ``sizes``: the file's bytes."""
    import torch

    from .. import symbolics
    from ..lowering import lowered
    from ..rewrite import MAX_TORCHSCRIPT_OPSET

    args = _example(s, sizes)
    in_all = s.names + [x for layer in s.kv_layers for x in (layer["past_key"], layer["past_value"])]
    out_all = s.out_names + [x for layer in s.kv_layers for x in (layer["present_key"], layer["present_value"])]
    axes = _dynamic_axes(s.graph, s.names, s.out_names, s.dynamic, s.kv_layers, s.batch_sym)
    opset = min(s.opset, MAX_TORCHSCRIPT_OPSET)
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), symbolics.registered(opset), \
                lowered(s.module, s.graph, s.choices, s.io) as dispatch, torch.no_grad():
            warnings.simplefilter("ignore")
            s.wrapper.dispatch = dispatch
            torch.onnx.export(s.wrapper, tuple(args), buf, input_names=in_all, output_names=out_all,
                              dynamic_axes=axes, opset_version=opset, do_constant_folding=True,
                              dynamo=False, keep_initializers_as_inputs=True)  # no dedup: see ..names
    finally:
        s.module.eval()  # torch.onnx.export restores the wrapper's mode recursively
    return buf.getvalue()


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (500 characters at most), or its type's name."""
    text = str(exc).strip()
    return text.splitlines()[0][:500] if text else type(exc).__name__
