"""The ``metadata_props`` nngraph writes into every exported model, and reading them back.

Keys (values are strings; structured ones are JSON):

``nngraph.version``            nngraph version that exported the file
``nngraph.spec``               spec name;  ``nngraph.spec_file``: the spec path as given
``nngraph.fingerprint``        :meth:`nngraph.ir.Graph.fingerprint` of the architecture
``nngraph.opset``              default-domain opset
``nngraph.opset_reason``       why that opset: asked, the floor, or which kernel/lowering/fusion needs it
``nngraph.target``             export target (``onnx``, ``ort-cpu``, ``ort-cuda``)
``nngraph.attention_kernels``  JSON {node: {kernel, onnx_op, reason}}
``nngraph.lowering``           JSON {node: how a dynamic part was lowered} (mamba, moe, ...)
``nngraph.inputs`` / ``nngraph.outputs``  JSON [{name, shape (ints and dim names), dtype}]
``nngraph.dynamic``            JSON list of the dynamic dim names
``nngraph.kv_cache``           JSON (only with a KV cache): token input, logits output, and per
                               layer {node, past_key, past_value, present_key, present_value,
                               kv_heads, head_dim}
``nngraph.weights``            where the weights came from (or ``seed N`` for initial weights)
``nngraph.fusions``            JSON {fusion: times applied} (:mod:`nngraph.compilers.onnx.fusions`; ORT targets)
``nngraph.precision``          JSON (float16 exports only): {dtype, float32_ops kept, io}
``nngraph.expected_seq``       the sequence length the attention kernels were chosen for (if given)
``nngraph.external_data``      the file beside the model holding its weights (large models)
``nngraph.tokenizer``          the tokenizer.json of the run the weights come from (or ``export --tokenizer``),
                               so ``generate --prompt TEXT`` needs nothing else (:mod:`nngraph.compilers.tokenizer`)
``nngraph.seq2seq``            JSON (an encoder-decoder's decoder step): {encoder file, memory input,
                               source_inputs, shared_inputs} (:mod:`nngraph.compilers.onnx.seq2seq`)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PREFIX = "nngraph."


def set_metadata(model: Any, items: dict[str, Any]) -> None:
    """Set ``nngraph.<key>`` props on an ``onnx.ModelProto`` (non-strings as JSON), replacing old values."""
    keep = [p for p in model.metadata_props if not (p.key.startswith(PREFIX) and p.key[len(PREFIX):] in items)]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in items.items():
        prop = model.metadata_props.add()
        prop.key = PREFIX + key
        prop.value = value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def decode(props: dict[str, str]) -> dict[str, Any]:
    """``{key without prefix: value}`` of the nngraph props, JSON values decoded."""
    out: dict[str, Any] = {}
    for key, value in props.items():
        if not key.startswith(PREFIX):
            continue
        try:
            out[key[len(PREFIX):]] = json.loads(value) if value[:1] in "[{" else value
        except ValueError:
            out[key[len(PREFIX):]] = value
    return out


def read_metadata(source: Any) -> dict[str, Any]:
    """The nngraph metadata of a model: an ``onnx.ModelProto``, an ORT session, or a path."""
    if hasattr(source, "metadata_props"):
        return decode({p.key: p.value for p in source.metadata_props})
    if hasattr(source, "get_modelmeta"):
        return decode(dict(source.get_modelmeta().custom_metadata_map))
    import onnx

    model = onnx.load(str(Path(source)), load_external_data=False)
    return decode({p.key: p.value for p in model.metadata_props})


def spec_dims(meta: dict[str, Any], name: str, dims: list[Any]) -> list[Any]:
    """The dims of input/output ``name`` as the spec wrote them (``nngraph.inputs``/``outputs``: ints and dim
    names) where the file's own ``dims`` are not numbers -- an output's may be a name the tracer made up
    (``LayerNormalizationhidden_dim_2``) where the spec has 16. ``dims`` unchanged without a record."""
    given = next((t["shape"] for t in meta.get("inputs", []) + meta.get("outputs", []) if t["name"] == name), None)
    if given is None or len(given) != len(dims):
        return dims
    return [d if isinstance(d, int) and d >= 0 else g for g, d in zip(given, dims)]
