"""Initializers named after the torch parameters they hold, as the spec names them (``h.0.attn.qkv.weight``).

Why names get lost in a TorchScript export, and what this module does about each:

* parameters come out as ``model.<name>`` (the export wrapper holds the model as ``model``): the
  prefix is dropped;
* constant folding stores ``nn.Linear``'s weight transposed for the ``MatMul`` (a new tensor named
  ``onnx::MatMul_<n>``), and a tied weight read both ways (GPT's ``wte`` for the embedding and the LM
  head) once more: a folded tensor equal to exactly one parameter ``p`` becomes ``p``, equal to its
  transpose ``p.T`` (the documented mapped name: the tensor is ``p`` stored transposed);
* the exporter deduplicates equal initializers (fresh zero biases of different layers end up as one
  tensor named after the first): the export keeps initializers as graph inputs while tracing, which
  turns that pass off, and :func:`drop_initializer_inputs` removes them from the inputs afterwards
  (an initializer listed as an input is overridable, which stops ORT from folding through it).

A tensor that equals no parameter (Conv + BatchNorm folded into one weight, a sliced table) or
several (equal values: ambiguous) keeps the exporter's name.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

#: the attribute under which :class:`nngraph.compilers.onnx.wrapper.ExportWrapper` holds the model
PREFIX = "model."


def drop_initializer_inputs(model: onnx.ModelProto) -> None:
    """Remove the graph inputs that are initializers (an export with ``keep_initializers_as_inputs``)."""
    inits = {t.name for t in model.graph.initializer}
    keep = [i for i in model.graph.input if i.name not in inits]
    del model.graph.input[:]
    model.graph.input.extend(keep)


def name_initializers(model: onnx.ModelProto, module: Any) -> dict[str, str]:
    """Rename ``model``'s initializers after ``module``'s parameters and buffers (see the module doc) in place;
    returns {old name: new name}."""
    tensors = {n: t.detach().cpu().numpy() for n, t in list(module.named_parameters()) + list(module.named_buffers())}
    by_shape: dict[tuple, list[tuple[str, np.ndarray]]] = {}
    for name, arr in tensors.items():
        by_shape.setdefault((arr.shape, arr.dtype.str), []).append((name, arr))
        if arr.ndim == 2:
            by_shape.setdefault((arr.shape[::-1], arr.dtype.str), []).append((name + ".T", arr.T))
    taken = _value_names(model.graph)
    renames: dict[str, str] = {}
    for init in model.graph.initializer:
        new = _torch_name(init, tensors, by_shape)
        if new is None or new == init.name or new in taken:
            continue
        renames[init.name] = new
        taken.add(new)
    if renames:
        _rename(model.graph, renames)
    return renames


def _torch_name(init: onnx.TensorProto, tensors: dict[str, np.ndarray],
                by_shape: dict[tuple, list[tuple[str, np.ndarray]]]) -> str | None:
    """The parameter name ``init`` holds: its own without the wrapper prefix, else the one parameter (or
    transpose) equal to it; None when none or several are."""
    if init.name.startswith(PREFIX) and init.name[len(PREFIX):] in tensors:
        return init.name[len(PREFIX):]
    value = numpy_helper.to_array(init)
    same = [name for name, arr in by_shape.get((value.shape, value.dtype.str), []) if np.array_equal(arr, value)]
    return same[0] if len(same) == 1 else None


def _value_names(graph: onnx.GraphProto) -> set[str]:
    """Every value name of ``graph`` and its subgraphs (a new name must not shadow one)."""
    names = {i.name for i in graph.input} | {o.name for o in graph.output} | {t.name for t in graph.initializer}
    for node in graph.node:
        names.update(node.output)
        for sub in _subgraphs(node):
            names |= _value_names(sub)
    return names


def _subgraphs(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    return [a.g for a in node.attribute if a.type == onnx.AttributeProto.GRAPH] + \
        [g for a in node.attribute if a.type == onnx.AttributeProto.GRAPHS for g in a.graphs]


def _rename(graph: onnx.GraphProto, renames: dict[str, str]) -> None:
    """Apply ``renames`` to initializers and to every reference, subgraphs included (a Scan or If body reads
    outer values by name)."""
    for t in graph.initializer:
        t.name = renames.get(t.name, t.name)
    for v in list(graph.input) + list(graph.output) + list(graph.value_info):
        v.name = renames.get(v.name, v.name)
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in renames:
                node.input[i] = renames[name]
        for sub in _subgraphs(node):
            _rename(sub, renames)


class FreshNames:
    """Fresh, unique node/value names for inserted nodes."""

    def __init__(self, model: onnx.ModelProto):
        self.used = {n.name for n in model.graph.node} | {o for n in model.graph.node for o in n.output}
        self.used |= {i.name for i in model.graph.input} | {i.name for i in model.graph.initializer}

    def fresh(self, base: str) -> str:
        base = base.replace("::", "_").strip("/") or "node"
        name, n = base, 1
        while name in self.used:
            n += 1
            name = f"{base}_{n}"
        self.used.add(name)
        return name
