"""float16 export: the float32 export converted to float16 weights and activations, runnable on the target.

:func:`to_float16` uses ONNX Runtime's own converter (``onnxruntime.transformers.float16``):
float32 initializers and activations become float16 (values beyond float16's range are clamped
to +-65504, tiny ones to +-5.96e-8), with the model's float inputs and outputs kept float32
(``keep_io_types``: Cast nodes at the borders) so feeds, the KV-cache inputs of ``generate`` and
``nngraph infer`` files are the same as for the float32 file.

Not every op has a float16 kernel on every execution provider (ORT's CPU provider lacks many).
The conversion is therefore checked by creating a session on the target's providers: an op ORT
reports as not implemented for float16 is added to the block list (it stays float32, with Casts
around it) and the conversion redone, until the session loads. The ops kept in float32 are
returned (and written to the metadata as ``nngraph.dtype`` details), so ``--explain`` says how
much of the graph really runs in half precision.

Accuracy: float16 has a 10-bit mantissa (relative rounding 4.9e-4 per op); the export's check
compares the float16 file with the float32 torch model at a relative tolerance of
:data:`FP16_TOLERANCE` (``max |ORT - torch| <= tol * max(1, max |torch|)``).
"""

from __future__ import annotations

import re
from typing import Any

DTYPES = ("float32", "float16")
#: the default check tolerance of float16 exports (relative to the outputs' magnitude, >= 1)
FP16_TOLERANCE = 1e-2
_MAX_ROUNDS = 12
_NOT_IMPL = re.compile(r"Could not find an implementation for (\w+)\(")


def to_float16(model: Any, providers: list[str]) -> tuple[Any, list[str]]:
    """``model`` (float32 ModelProto) in float16 with float32 I/O, and the op types kept in float32 for ``providers``."""
    import onnxruntime as ort
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    blocked: list[str] = []
    last = ""
    for _ in range(_MAX_ROUNDS):
        src = type(model)()
        src.CopyFrom(model)
        converted = convert_float_to_float16(src, keep_io_types=True, disable_shape_infer=True,
                                             op_block_list=list(DEFAULT_OP_BLOCK_LIST) + blocked)
        _sort(converted)   # the converter appends its input Casts at the end of the node list
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # load check only: fast
        try:
            ort.InferenceSession(converted.SerializeToString(), sess_options=opts, providers=providers)
            return converted, blocked
        except Exception as exc:  # noqa: BLE001 - ORT's "not implemented" names the op to keep in float32
            last = str(exc)
            m = _NOT_IMPL.search(last)
            if m is None or m.group(1) in blocked:
                break
            blocked.append(m.group(1))
    raise ValueError(f"the float16 model does not load in ONNX Runtime: {last.splitlines()[0][:300] if last else '?'}")


def _sort(model: Any) -> None:
    from .fusions import toposort

    g = model.graph
    ordered = toposort(list(g.node), {i.name for i in g.input} | {t.name for t in g.initializer})
    del g.node[:]
    g.node.extend(ordered)


def convert(model: Any, dtype: str, info: Any, notes: list[str]) -> tuple[Any, dict[str, Any]]:
    """The export's precision step: ``model`` in ``dtype`` for target ``info`` (float32: unchanged) and its
    metadata ({} for float32); appends a note; ValueError when the converted model does not load."""
    if dtype == "float32":
        return model, {}
    try:
        model, kept = to_float16(model, _providers(info))
    except ValueError as exc:
        raise ValueError(f"--dtype float16: {exc}") from None
    notes.append("float16 weights and activations, float32 inputs/outputs" +
                 (f"; kept in float32 (no float16 kernel on {info.name}): {', '.join(kept)}" if kept else ""))
    return model, {"dtype": "float16", "float32_ops": kept, "io": "float32 (cast at the borders)"}


def _providers(info: Any) -> list[str]:
    """The target's providers this onnxruntime has (the CPU provider at least)."""
    import onnxruntime as ort

    have = ort.get_available_providers()
    return [p for p in info.providers if p in have] or ["CPUExecutionProvider"]
