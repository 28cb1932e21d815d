"""Drawing a graph: Graphviz DOT and Mermaid flowcharts, generated as text by this module.

Blocks become clusters (``subgraph cluster_...`` in DOT, ``subgraph`` in
Mermaid) nested by the node's scope (``layers`` > ``layers.0`` > nodes), edges
carry the tensor type flowing along them, graph inputs and outputs get their own
shapes. ``.svg``/``.png`` are rendered by the Graphviz ``dot`` binary when it is
installed; nothing here needs networkx or any Python drawing package.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Callable

from .infer import ref_params
from .inspect import type_text
from .io import write_bytes_atomic, write_text_atomic
from .ir import Graph, Node

FORMATS = ("dot", "svg", "png", "mmd")


class DrawError(Exception):
    """The drawing cannot be produced (unknown format, Graphviz missing or failing)."""


def _q(text: str) -> str:
    """A DOT double-quoted string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _scope_tree(graph: Graph) -> tuple[dict[tuple[str, ...], list[tuple[str, ...]]], dict[tuple[str, ...], list[Node]]]:
    """Children of every scope prefix, and the nodes that sit directly in each scope."""
    children: dict[tuple[str, ...], list[tuple[str, ...]]] = {(): []}
    members: dict[tuple[str, ...], list[Node]] = {(): []}
    for node in graph.nodes.values():
        scope = tuple(node.scope)
        for depth in range(1, len(scope) + 1):
            prefix, parent = scope[:depth], scope[:depth - 1]
            if prefix not in children:
                children[prefix] = []
                members[prefix] = []
                children[parent].append(prefix)
        members[scope].append(node)
    return children, members


def _block_labels(graph: Graph) -> dict[tuple[str, ...], str]:
    labels = {}
    for use in graph.block_uses:
        extra = f" ×{use.repeat}" if use.repeat > 1 else ""
        extra += ", shared" if use.shared else ""
        labels[tuple(use.name.split("."))] = f"{use.name}: {use.block}{extra}"
    return labels


def _node_label(node: Node) -> str:
    label = f"{node.name.rsplit('.', 1)[-1]}\n{node.op}"
    if node.n_params:
        label += f"\n{node.n_params:,} params"
    elif node.shares_params_with:
        label += f"\nshares {node.shares_params_with}"
    return label


def _edges(graph: Graph) -> list[tuple[str, str, str]]:
    """(source id, target id, label) for every value read, in graph order."""
    edges = []
    for node in graph.nodes.values():
        for ref in node.all_refs():
            label = type_text(graph.type_of(ref))
            if ref.output is not None:
                label = f"{ref.output}: {label}"
            edges.append((ref.node, node.name, label))
    for out_name, ref in graph.outputs.items():
        edges.append((ref.node, f"output:{out_name}", type_text(graph.type_of(ref))))
    return edges


def _ref_edges(graph: Graph) -> list[tuple[str, str, str]]:
    """(referenced node, node, param) for ``ref`` parameters such as a weight ``tie``."""
    return [(target, node.name, param) for node in graph.nodes.values() for param, target in ref_params(graph, node).items()]


def _scoped_lines(graph: Graph, node_line: Callable[[Node], str],
                  open_scope: Callable[[tuple[str, ...], str], list[str]], close_line: str) -> list[str]:
    """The node lines of every format, nested by block scope (one walker; the formats give the line shapes).

    ``open_scope(scope, label)`` returns the lines that open a scope's cluster, ``close_line`` closes it."""
    children, members = _scope_tree(graph)
    labels = _block_labels(graph)
    lines: list[str] = []

    def emit(scope: tuple[str, ...], indent: str) -> None:
        lines.extend(indent + node_line(node) for node in members[scope])
        for child in children[scope]:
            lines.extend(indent + line for line in open_scope(child, labels.get(child, ".".join(child))))
            emit(child, indent + "  ")
            lines.append(indent + close_line)

    emit((), "  ")
    return lines


def _scope_id(prefix: str, scope: tuple[str, ...]) -> str:
    return prefix + re.sub(r"[^A-Za-z0-9_]", "_", ".".join(scope))


def to_dot(graph: Graph) -> str:
    """Graphviz DOT text for the graph."""
    lines = [f"digraph {_q(graph.name)} {{", "  rankdir=TB;", '  graph [fontname="Helvetica", fontsize=11];', '  node [fontname="Helvetica", fontsize=10];',
             '  edge [fontname="Helvetica", fontsize=9];']
    for name, gi in graph.inputs.items():
        style = ', style="dashed"' if gi.optional else ""
        label = _q(name + "\n" + str(gi.type))
        lines.append(f"  {_q(name)} [shape=invhouse, label={label}{style}];")
    lines += _scoped_lines(
        graph, lambda node: f"{_q(node.name)} [shape=box, style=\"rounded\", label={_q(_node_label(node))}];",
        lambda scope, label: [f"subgraph {_q(_scope_id('cluster_', scope))} {{",
                              f"  label={_q(label)}; style=\"rounded\"; color=\"gray50\";"], "}")
    for out_name in graph.outputs:
        lines.append(f"  {_q('output:' + out_name)} [shape=house, style=\"bold\", label={_q(out_name)}];")
    for src, dst, label in _edges(graph):
        lines.append(f"  {_q(src)} -> {_q(dst)} [label={_q(label)}];")
    for src, dst, param in _ref_edges(graph):
        lines.append(f"  {_q(src)} -> {_q(dst)} [label={_q(param)}, style=\"dashed\", arrowhead=\"none\", constraint=false];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _mermaid_text(text: str) -> str:
    """Text inside a Mermaid ``"..."`` label (quotes become entities, newlines <br/>)."""
    return text.replace('"', "#quot;").replace("\n", "<br/>")


def to_mermaid(graph: Graph) -> str:
    """A Mermaid flowchart for the graph (renders on GitHub in a ```mermaid block)."""
    ids: dict[str, str] = {}

    def mid(name: str) -> str:
        if name not in ids:
            base = "n_" + re.sub(r"[^A-Za-z0-9_]", "_", name)
            candidate, k = base, 1
            while candidate in ids.values():
                k += 1
                candidate = f"{base}_{k}"
            ids[name] = candidate
        return ids[name]

    lines = ["flowchart TB"]
    for name, gi in graph.inputs.items():
        label = _mermaid_text(name + "\n" + str(gi.type))
        lines.append(f'  {mid(name)}[/"{label}"/]')
    lines += _scoped_lines(
        graph, lambda node: f'{mid(node.name)}("{_mermaid_text(_node_label(node))}")',
        lambda scope, label: [f'subgraph {_scope_id("s_", scope)}["{_mermaid_text(label)}"]'], "end")
    for out_name in graph.outputs:
        lines.append(f'  {mid("output:" + out_name)}[["{_mermaid_text(out_name)}"]]')
    for src, dst, label in _edges(graph):
        lines.append(f'  {mid(src)} -->|"{_mermaid_text(label)}"| {mid(dst)}')
    for src, dst, param in _ref_edges(graph):
        lines.append(f'  {mid(src)} -.-|"{_mermaid_text(param)}"| {mid(dst)}')
    return "\n".join(lines) + "\n"


def render(graph: Graph, path: str | Path, fmt: str | None = None) -> Path:
    """Write the drawing of ``graph`` to ``path``; the format comes from ``fmt`` or the file suffix."""
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt not in FORMATS:
        raise DrawError(f"unknown drawing format '{fmt or path.name}': use one of " + ", ".join(f".{f}" for f in FORMATS))
    if fmt == "dot":
        write_text_atomic(path, to_dot(graph))
    elif fmt == "mmd":
        write_text_atomic(path, to_mermaid(graph))
    else:
        write_bytes_atomic(path, run_dot(to_dot(graph), fmt))
    return path


def run_dot(dot_text: str, fmt: str) -> bytes:
    """Render DOT text with the Graphviz ``dot`` binary."""
    exe = shutil.which("dot")
    if exe is None:
        raise DrawError(f"rendering .{fmt} needs the Graphviz 'dot' program, which is not installed; "
                        "install graphviz (e.g. `apt-get install graphviz` or `brew install graphviz`), "
                        "or write .dot or .mmd instead")
    try:
        proc = subprocess.run([exe, f"-T{fmt}"], input=dot_text.encode("utf-8"), capture_output=True, timeout=120)
    except subprocess.TimeoutExpired as exc:
        raise DrawError(f"Graphviz 'dot' took longer than {exc.timeout:.0f} s") from exc
    if proc.returncode != 0:
        raise DrawError(f"Graphviz 'dot' failed (exit {proc.returncode}): {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout
