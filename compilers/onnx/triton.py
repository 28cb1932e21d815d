"""A Triton Inference Server model repository for an exported model (``nngraph export SPEC --triton DIR``).

::

    DIR/
      NAME/                 # the spec's name
        config.pbtxt        # Triton's ModelConfig in protobuf text format
        1/model.onnx        # version 1: the exported file (model.onnx.data beside it for external weights)

``config.pbtxt`` is derived from the ONNX file's inputs and outputs (names, element types, dims as the
export named them from the spec): ``backend: "onnxruntime"``; a symbolic dim is ``-1``. When one symbolic
dim is axis 0 of every input and output (the spec's ``batch``), Triton owns it: ``max_batch_size`` is set,
that axis is left out of every ``dims`` (Triton's convention) and ``dynamic_batching`` gathers requests of
equal shapes for up to ``max_queue_delay`` microseconds. Otherwise ``max_batch_size: 0`` and the dims are
complete. The instance group runs on the GPU for the ``ort-cuda`` target, else on the CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: ONNX TensorProto element type name -> Triton's DataType name
TRITON_TYPES = {"FLOAT": "TYPE_FP32", "DOUBLE": "TYPE_FP64", "FLOAT16": "TYPE_FP16", "BFLOAT16": "TYPE_BF16",
                "INT64": "TYPE_INT64", "INT32": "TYPE_INT32", "INT16": "TYPE_INT16", "INT8": "TYPE_INT8",
                "UINT8": "TYPE_UINT8", "BOOL": "TYPE_BOOL"}
MAX_QUEUE_DELAY_US = 1000
VERSION = "1"


def repository_paths(folder: str | Path, name: str) -> tuple[Path, Path]:
    """(the model file, config.pbtxt) of model ``name`` in the repository ``folder``."""
    model_dir = Path(folder) / name
    return model_dir / VERSION / "model.onnx", model_dir / "config.pbtxt"


def io_of(model: Any) -> tuple[list[tuple[str, str, list[int | str]]], list[tuple[str, str, list[int | str]]]]:
    """The (name, ONNX element type name, dims: ints and dim names) of the graph's inputs and outputs, the
    symbolic dims named as in the spec (:func:`.metadata.spec_dims`)."""
    import onnx

    from .metadata import read_metadata, spec_dims

    meta = read_metadata(model)

    def one(value: Any) -> tuple[str, str, list[int | str]]:
        t = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else d.dim_param or "?" for d in t.shape.dim]
        return value.name, onnx.TensorProto.DataType.Name(t.elem_type), spec_dims(meta, value.name, dims)

    inits = {i.name for i in model.graph.initializer}
    return [one(v) for v in model.graph.input if v.name not in inits], [one(v) for v in model.graph.output]


def batch_dim(inputs: list, outputs: list) -> str | None:
    """The symbolic dim at axis 0 of every input and output, if there is one (Triton's batch dim)."""
    firsts = {dims[0] if dims else None for _, _, dims in inputs + outputs}
    first = next(iter(firsts)) if len(firsts) == 1 else None
    return first if isinstance(first, str) and first != "?" else None


def config_text(model: Any, name: str, target: str, max_batch: int) -> str:
    """``config.pbtxt`` for the ONNX ``model`` (module doc)."""
    inputs, outputs = io_of(model)
    batch = batch_dim(inputs, outputs)
    lines = [f'name: "{name}"', 'backend: "onnxruntime"', f"max_batch_size: {max_batch if batch else 0}"]
    for key, items in (("input", inputs), ("output", outputs)):
        lines.append(f"{key} [")
        lines.append(",\n".join(_tensor(n, t, dims[1:] if batch else dims) for n, t, dims in items))
        lines.append("]")
    if batch:
        lines.append(f"dynamic_batching {{ max_queue_delay_microseconds: {MAX_QUEUE_DELAY_US} }}")
    kind = "KIND_GPU" if target == "ort-cuda" else "KIND_CPU"
    lines.append(f"instance_group [ {{ count: 1, kind: {kind} }} ]")
    return "\n".join(lines) + "\n"


def _tensor(name: str, onnx_type: str, dims: list[int | str]) -> str:
    """One input/output entry; a tensor that is only the batch dim (``lengths [batch]``) is ``dims: [1]``
    reshaped to ``[]`` (Triton's convention: dims may not be empty)."""
    if onnx_type not in TRITON_TYPES:
        raise ValueError(f"'{name}' is {onnx_type}, which Triton's ONNX Runtime backend does not take")
    shape = ", ".join(str(d) if isinstance(d, int) and d > 0 else "-1" for d in dims)
    reshape = "" if dims else ", reshape: { shape: [ ] }"
    return f'  {{ name: "{name}", data_type: {TRITON_TYPES[onnx_type]}, dims: [ {shape or 1} ]{reshape} }}'


def write_config(model_file: Path, config_file: Path, name: str, target: str, max_batch: int) -> str:
    """Write ``config.pbtxt`` for the exported ``model_file``; returns its text."""
    import onnx

    from nngraph.io import write_text_atomic

    text = config_text(onnx.load(str(model_file), load_external_data=False), name, target, max_batch)
    write_text_atomic(config_file, text)
    return text
