"""Build small specs for op tests and locate tokens for line:col assertions (shared by the op-family tests)."""

from __future__ import annotations

import re


def spec_text(inputs: dict[str, tuple[list, str]], nodes: list[str], outputs: str = "[n]") -> str:
    """A spec with graph inputs (name -> (shape, dtype)) and node lines (flow-style YAML), one per line.

    Line 1 is ``nngraph: 1``; node i sits on line ``node_line(i, len(inputs))``.
    """
    lines = ["nngraph: 1", "name: t", "inputs:"]
    for name, (shape, dtype) in inputs.items():
        lines.append(f"  {name}: {{shape: [{', '.join(str(d) for d in shape)}], dtype: {dtype}}}")
    lines += ["graph:"] + [f"  - {n}" for n in nodes] + [f"outputs: {outputs}"]
    return "\n".join(lines) + "\n"


def node_line(i: int = 0, n_inputs: int = 1) -> int:
    """Line number of node i in a spec built by :func:`spec_text`."""
    return 3 + n_inputs + 2 + i


def col_of(text: str, line: int, token: str) -> int:
    """1-based column where ``token`` first occurs on line ``line`` (1-based) of ``text``."""
    source = text.splitlines()[line - 1]
    assert token in source, (token, source)
    return source.index(token) + 1


def value_col(text: str, line: int, key: str) -> int:
    """1-based column of the value of ``key: value`` on line ``line``; the node's ``{`` when key is None."""
    if key is None:
        return col_of(text, line, "{")
    source = text.splitlines()[line - 1]
    match = re.search(rf"(?<![A-Za-z0-9_]){re.escape(key)}: ", source)
    assert match, (key, source)
    return match.end() + 1


def one_node(diagnose, node: str, inputs: dict[str, tuple[list, str]]):
    """The IR node ``n`` of a one-node spec that must validate without errors."""
    graph, errors = diagnose(spec_text(inputs, [node]))
    assert not errors, errors
    return graph.nodes["n"]


def single_error(diagnose, node: str, token: str, inputs: dict[str, tuple[list, str]]):
    """The single error of a one-node spec: ((line, col) reported, (line, col) of ``token``, message, hint).

    ``token`` must occur exactly once on the node's line.
    """
    text = spec_text(inputs, [node])
    _, errors = diagnose(text)
    assert len(errors) == 1, errors
    line, col, message, hint = errors[0]
    where = node_line(0, len(inputs))
    source = text.splitlines()[where - 1]
    assert source.count(token) == 1, (token, source)
    return (line, col), (where, source.index(token) + 1), message, hint
