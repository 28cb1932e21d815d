"""Input dims of an export: which must stay fixed, the dynamic axes of every input/output, the I/O metadata."""

from __future__ import annotations

import re

from typing import Any, Mapping

from .kernels import ATTENTION_OPS


def length_bound_symbols(graph: Any) -> dict[str, str]:
    """Input dims whose size the export must fix, with the reason (a table mask such as BigBird's ``random``: its
    rows are drawn in Python for each sequence length, so one ONNX graph holds one length's rows)."""
    from nngraph.attention.analysis import table_leaves
    from nngraph.attention.masks import parse_mask

    out: dict[str, str] = {}
    for node in graph.nodes.values():
        if node.op not in ATTENTION_OPS:
            continue
        try:
            tables = table_leaves(parse_mask(node.params.get("mask", "none")))
        except ValueError:
            continue
        if not tables:
            continue
        for slot in ("x", "context"):
            ref = node.inputs.get(slot)
            t = graph.type_of(ref) if ref is not None else None
            if t is not None and len(t.shape) > 1 and isinstance(t.shape[1], str):
                for sym in _symbols_in(str(t.shape[1])):
                    out.setdefault(sym, f"node '{node.name}' has a {tables[0].name} mask whose rows are a table "
                                        "that depends on the sequence length")
    out.update({k: v for k, v in _time_loop_symbols(graph).items() if k not in out})
    return out


def _time_loop_symbols(graph: Any) -> dict[str, str]:
    """The time dims of ``recur`` sequences: the tracer unrolls the loop, so one file holds one length."""
    out: dict[str, str] = {}
    for node in graph.nodes.values():
        cell = getattr(node.params.get("cell"), "graph", None) if node.op == "recur" else None
        if cell is None:
            continue
        bind = node.params.get("bind") or list(cell.inputs)[:len(node.variadic)]
        sequences = node.params.get("sequences") or bind[:1]
        for name, ref in zip(bind, node.variadic):
            t = graph.type_of(ref) if name in sequences else None
            if t is not None and len(t.shape) > 1 and isinstance(t.shape[1], str):
                for sym in _symbols_in(str(t.shape[1])):
                    out.setdefault(sym, f"node '{node.name}' (recur) unrolls its time loop when traced")
    return out


def _symbols_in(text: str) -> list[str]:
    import re

    return [m for m in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text)]


def concrete(dim: Any, sizes: Mapping[str, int]) -> int:
    from nngraph.compilers.torch.check import concrete_dim

    return concrete_dim(dim, sizes)


def _batch_symbol(graph: Any, names: list[str]) -> str:
    d = graph.inputs[names[0]].type.shape[0] if names and graph.inputs[names[0]].type.shape else "batch"
    return d if isinstance(d, str) else "batch"


def _axis_name(dim: Any) -> str | None:
    if isinstance(dim, int):
        return None
    text = str(dim)
    # the text is already the canonical (simplified) dim; each run of operators becomes one '_'
    return text if text.isidentifier() else re.sub(r"[^0-9A-Za-z]+", "_", text).strip("_") or "dim"


def _dynamic_axes(graph: Any, names: list[str], out_names: list[str], dyn: list[str], kv_layers: list[dict],
                  batch: str) -> dict[str, dict[int, str]]:
    axes: dict[str, dict[int, str]] = {}
    for n in names:
        axes[n] = {i: d for i, d in enumerate(graph.inputs[n].type.shape) if isinstance(d, str) and d in dyn}
    for n in out_names:
        t = graph.type_of(graph.outputs[n])
        a = {}
        for i, d in enumerate(t.shape if t is not None else ()):
            if isinstance(d, str) and (not d.isidentifier() or d in dyn):
                a[i] = _axis_name(d)
        axes[n] = a
    if kv_layers:  # a key_padding input covers past + new keys, as the present outputs do
        for n in _total_inputs(graph, names):
            axes[n] = {**axes[n], 1: "total_seq"}
    for layer in kv_layers:
        b = {0: batch} if batch in dyn else {}
        axes[layer["past_key"]] = axes[layer["past_value"]] = {**b, 2: "past_seq"}
        axes[layer["present_key"]] = axes[layer["present_value"]] = {**b, 2: "total_seq"}
    return axes


def _total_inputs(graph: Any, names: list[str]) -> list[str]:
    """The exported inputs that describe every key of a KV-cache step: ``key_padding`` ones."""
    from nngraph.compilers.decoding import input_roles

    return [n for n, role in input_roles(graph).items() if role == "key_padding" and n in names]


def _io_meta(graph: Any, names: list[str], out_names: list[str], dyn: list[str], sizes: Mapping[str, int],
             kv_layers: list[dict], batch: str) -> tuple[list[dict], list[dict]]:
    def shape_of(t: Any) -> list:
        return [d if isinstance(d, int) else (d if d in dyn or not str(d).isidentifier() else concrete(d, sizes))
                for d in t.shape]

    ins = [{"name": n, "shape": shape_of(graph.inputs[n].type), "dtype": graph.inputs[n].type.dtype} for n in names]
    for i in ins if kv_layers else []:
        if i["name"] in _total_inputs(graph, names):
            i["shape"] = [i["shape"][0], "total_seq", *i["shape"][2:]]
    outs = []
    for n in out_names:
        t = graph.type_of(graph.outputs[n])
        outs.append({"name": n, "shape": shape_of(t) if t is not None else None, "dtype": t.dtype if t else None})
    for layer in kv_layers:
        shape = [batch, layer["kv_heads"], "past_seq", layer["head_dim"]]
        ins += [{"name": layer[k], "shape": shape, "dtype": "float32"} for k in ("past_key", "past_value")]
        outs += [{"name": layer[k], "shape": shape[:2] + ["total_seq"] + shape[3:], "dtype": "float32"}
                 for k in ("present_key", "present_value")]
    return ins, outs
