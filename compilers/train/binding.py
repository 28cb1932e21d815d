"""Which graph input receives which data field, and the shape checks that go with it.

Rules, in order: ``train.inputs`` (graph input -> field) when given; else a
graph input named like a data field (``x``, ``tokens``, ``edge_index``,
``batch``) gets it; else the one float input gets ``x`` and the one integer
[batch, seq] input gets ``tokens``. Inputs still unbound that are optional
stay absent; required integer inputs of language models are filled (segment
ids with zeros, ``*len*`` [batch] inputs with the sequence length); anything
else is an error that says what to write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from nngraph.errors import Diagnostic, SpecError
from nngraph.ir import Graph
from nngraph.types import is_float

from .config import RunConfig


@dataclass
class Binding:
    """graph input -> data field, plus inputs filled with constants."""

    fields: dict[str, str]
    fill: dict[str, str] = field(default_factory=dict)  # input -> "zeros" | "length"
    per_example: dict[str, tuple[int, ...] | None] = field(default_factory=dict)

    def input_for(self, data_field: str) -> str | None:
        return next((k for k, v in self.fields.items() if v == data_field), None)


def _per_example(graph: Graph, name: str) -> tuple[int, ...] | None:
    dims = graph.inputs[name].type.shape[1:]
    return tuple(dims) if all(isinstance(d, int) for d in dims) else None  # type: ignore[arg-type]


def input_error(run: RunConfig, name: str, message: str, hint: str | None = None) -> SpecError:
    """A :class:`SpecError` at graph input ``name``'s line in the spec: the shape the data contradicts is written
    there (the ``train:`` section, possibly absent, says nothing about it)."""
    return SpecError([Diagnostic(run.graph.inputs[name].pos, message, hint)])


def bind(run: RunConfig, available: dict[str, Any], task: str, extra: dict[str, str] | None = None) -> Binding:
    """Bind graph inputs to the data ``available`` (field name -> example tensor or None for 'computed')."""
    graph = run.graph
    explicit: dict[str, str] = dict(run.values["inputs"])
    state_inputs = set((run.values["state"] or {}).keys())
    fields: dict[str, str] = {}
    for inp, fld in explicit.items():
        if fld not in available:
            raise run.error("inputs", f"train.inputs: data field '{fld}' does not exist for task '{task}'",
                            f"fields: {', '.join(sorted(available))}")
        fields[inp] = fld
    for inp, fld in (extra or {}).items():
        if inp in graph.inputs and inp not in fields:
            fields[inp] = fld
    free = [n for n, gi in graph.inputs.items() if n not in fields and n not in state_inputs]
    for name in free:
        if name in available and name not in fields.values():
            fields[name] = name
    for wanted, want_float in (("x", True), ("tokens", False)):
        if wanted not in available or wanted in fields.values():
            continue
        cands = [n for n in free if n not in fields and not graph.inputs[n].optional
                 and is_float(graph.inputs[n].type.dtype) == want_float]
        if want_float is False:
            cands = [n for n in cands if graph.inputs[n].type.rank == 2] or cands
        if len(cands) >= 1:
            fields[cands[0]] = wanted
    binding = Binding(fields)
    for name in free:
        gi = graph.inputs[name]
        if name in fields or gi.optional:
            continue
        if task in ("language_model", "masked_lm") and not is_float(gi.type.dtype):
            if gi.type.rank == 1 and "len" in name:
                binding.fill[name] = "length"
                continue
            if gi.type.rank == 2:
                binding.fill[name] = "zeros"
                continue
        raise input_error(run, name, f"graph input '{name}' {list(map(str, gi.type.shape))} ({gi.type.dtype}) gets no "
                          f"data for task '{task}'", f"map it to a data field with train.inputs: {{{name}: FIELD}}; "
                          f"fields: {', '.join(sorted(available))}")
    for inp in fields:
        binding.per_example[inp] = _per_example(graph, inp)
    return binding


def shape_input(run: RunConfig, binding: Binding, inp: str, value: torch.Tensor) -> torch.Tensor:
    """Reshape a batch of a data field to the graph input's per-example shape (e.g. 64 -> [1, 8, 8]); check dtype."""
    gi = run.graph.inputs[inp]
    want = binding.per_example.get(inp)
    per = value.shape[1:]
    if want is not None and tuple(per) != want:
        n_have, n_want = int(torch.Size(per).numel()), int(torch.Size(want).numel())
        if n_have != n_want:
            shape = "[" + ", ".join(map(str, gi.type.shape)) + "]"
            raise input_error(run, inp, f"data field '{binding.fields[inp]}' has {n_have} values per example "
                              f"({list(per)}) but graph input '{inp}' is {shape} ({n_want} per example)",
                              f"change the spec's input shape (e.g. with --set) or the data (given at {run.train.pos('data')})")
        value = value.reshape(value.shape[0], *want)
    elif want is None and value.ndim != gi.type.rank:
        shape = "[" + ", ".join(map(str, gi.type.shape)) + "]"
        raise input_error(run, inp, f"data field '{binding.fields[inp]}' has rank {value.ndim} ({list(value.shape)}) but graph "
                          f"input '{inp}' is {shape}", f"the data is given at {run.train.pos('data')}")
    if is_float(gi.type.dtype):
        return value.float() if not value.is_floating_point() else value
    return value.long() if value.is_floating_point() else value


def embedding_limit(graph: Graph, inp: str) -> tuple[str, int] | None:
    """(node, num) of the smallest embedding table reading input ``inp`` directly."""
    best = None
    for node in graph.nodes.values():
        if node.op == "embedding" and any(r.node == inp for r in node.all_refs()):
            if best is None or node.params["num"] < best[1]:
                best = (node.name, int(node.params["num"]))
    return best


def position_limit(graph: Graph) -> tuple[str, int] | None:
    """(node, max_len) of the smallest learned position table, if any."""
    best = None
    for node in graph.nodes.values():
        ml = node.params.get("max_len") if node.op == "position_embedding" else None
        if isinstance(ml, int) and node.params.get("type", "learned") == "learned" and (best is None or ml < best[1]):
            best = (node.name, ml)
    return best


def output_classes(graph: Graph, output: str) -> int | None:
    """Size of the last dim of a graph output, when it is a number."""
    t = graph.type_of(graph.outputs[output])
    if t is None or not t.shape:
        return None
    last = t.shape[-1]
    return last if isinstance(last, int) else None
