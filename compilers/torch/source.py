"""Helpers of the code generator: names, paths, literals, ordering, comments and frees of generated source."""

from __future__ import annotations

import ast
import heapq
import keyword
import math
import os
import re
from typing import Any

from nngraph.errors import Diagnostic, SourcePos, SpecError
from nngraph.infer import ref_params
from nngraph.ir import Graph
from nngraph.types import TensorType, format_shape

#: names the generated code uses itself; variables never take them
RESERVED = {"self", "torch", "nn", "F", "nng", "TensorType", "None", "True", "False"}


def display_path(file: str) -> str:
    """A spec path as shown in generated code: relative to the working directory when inside it."""
    try:
        rel = os.path.relpath(file)
    except ValueError:
        return file
    return rel if not rel.startswith("..") and os.path.isabs(file) else file


def display_pos(pos: SourcePos) -> str:
    """``specs/mlp.yaml:12:5``."""
    return str(SourcePos(display_path(pos.file), pos.line, pos.col))


def class_name(graph: Graph) -> str:
    """CamelCase class name from the spec's name (``gpt-tiny`` -> ``GptTiny``)."""
    parts = [p for p in re.split(r"[^0-9A-Za-z]+", graph.name or "") if p]
    name = "".join(p[:1].upper() + p[1:] for p in parts) or "Model"
    return name if name[0].isalpha() else "Model" + name


class Namer:
    """Unique Python identifiers derived from node names."""

    def __init__(self) -> None:
        self.used: set[str] = set(RESERVED)

    def new(self, wanted: str) -> str:
        base = re.sub(r"\W", "_", wanted)
        if not base or base[0].isdigit():
            base = "v_" + base
        if keyword.iskeyword(base) or keyword.issoftkeyword(base) or base in RESERVED:
            base += "_"
        name, n = base, 1
        while name in self.used:
            n += 1
            name = f"{base}_{n}"
        self.used.add(name)
        return name


def attr_path(name: str) -> str:
    """``layers.3.attn`` -> ``self.layers[3].attn``."""
    out = "self"
    for part in name.split("."):
        out += f"[{part}]" if part.isdigit() else f".{part}"
    return out


def stable_order(graph: Graph) -> list[str]:
    """Nodes in dependency order, keeping the spec's order among independent nodes."""
    index = {name: i for i, name in enumerate(graph.nodes)}
    deps = {name: ({r.node for r in node.all_refs() if r.node in graph.nodes} | set(ref_params(graph, node).values()))
            for name, node in graph.nodes.items()}
    users: dict[str, list[str]] = {name: [] for name in graph.nodes}
    for name, ds in deps.items():
        for d in ds:
            users[d].append(name)
    waiting = {name: len(ds) for name, ds in deps.items()}
    ready = [(index[n], n) for n, k in waiting.items() if k == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, name = heapq.heappop(ready)
        order.append(name)
        for user in users[name]:
            waiting[user] -= 1
            if waiting[user] == 0:
                heapq.heappush(ready, (index[user], user))
    if len(order) != len(graph.nodes):
        raise SpecError([Diagnostic(SourcePos(graph.file, 1, 1), "the graph has a cycle", "run nngraph validate")])
    return order


def literal(value: Any) -> str:
    """Python source for a plain value (params, types, initializers); non-finite floats spelled out."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({str(value)!r})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, tuple):
        return "(" + ", ".join(literal(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, TensorType):
        return f"TensorType({literal(value.shape)}, {value.dtype!r})"
    if value is None or isinstance(value, (bool, int, float, str)):
        return repr(value)
    raise TypeError(f"cannot write {type(value).__name__} {value!r} into generated code")


def type_comment(outputs: dict[str, TensorType]) -> str:
    def one(t: TensorType) -> str:
        return format_shape(t.shape) + ("" if t.dtype == "float32" else f" {t.dtype}")
    if len(outputs) == 1:
        return one(next(iter(outputs.values())))
    return ", ".join(f"{k}: {one(t)}" for k, t in outputs.items())


def free_after_last_use(body: list[str], stmts: list[tuple[int, list[str], str]], keep: set[str]) -> list[str]:
    """``body`` with ``del v1, v2`` after the statement that reads each defined variable last (torch.fx frees the
    same way); variables in ``keep`` (graph outputs) and graph inputs (never defined by a statement) stay.

    Reads are the names in each statement's expression (parsed, so a dim expression such as
    ``a.shape[0]`` counts as a read of ``a``). A variable nobody reads is deleted right after its own statement.
    """
    last: dict[str, int] = {}
    for i, (_, names, expr) in enumerate(stmts):
        for v in names:
            last[v] = i
        for n in ast.walk(ast.parse(expr, mode="eval")):
            if isinstance(n, ast.Name) and n.id in last:
                last[n.id] = i
    dead: dict[int, list[str]] = {}
    for v, i in last.items():
        if v not in keep:
            dead.setdefault(i, []).append(v)
    out: list[str] = []
    after = {line: dead[i] for i, (line, _, _) in enumerate(stmts) if i in dead}
    for line, text in enumerate(body):
        out.append(text)
        if line in after:
            out.append(f"del {', '.join(after[line])}")
    return out
