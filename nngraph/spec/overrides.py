"""``--set key=value`` overrides, applied to the parsed document before validation.

``key`` is a var name (``d_model=512``), or a dotted path: ``vars.d_model``,
``train.optimizer.lr``, ``graph.NODE.PARAM`` (a top-level node's parameter).
Values are parsed as YAML scalars/flow collections by the same safe loader,
and everything then goes through the normal validation.
"""

from __future__ import annotations

from typing import Any

from ..errors import Diagnostic, Diagnostics, SourcePos, SpecError, choices_hint
from ..yamlsrc import Map, load_yaml_text


def parse_override(text: str) -> tuple[str, Any, SourcePos]:
    """Split ``key=value`` and parse the value safely; raises :class:`SpecError`."""
    pos = SourcePos(f"--set {text}")
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise SpecError([Diagnostic(pos, f"override '{text}' is not key=value", "e.g. --set d_model=512")])
    try:
        value = load_yaml_text(raw, f"--set {key.strip()}") if raw.strip() else ""
    except SpecError as err:  # a position inside the value text means nothing on a command line
        first = err.diagnostics[0]
        raise SpecError([Diagnostic(pos, f"value of override '{text}' is not valid: {first.message}",
                                    "quote it for the shell; values are YAML: 512, 0.1, true, [1, 2], text")]) from None
    return key.strip(), value, pos


def apply_overrides(data: dict, overrides: list[str], diag: Diagnostics) -> None:
    """Apply each override in order; problems are recorded in ``diag``."""
    for text in overrides:
        try:
            key, value, pos = parse_override(text)
        except SpecError as err:
            diag.extend(err.diagnostics)
            continue
        path = key.split(".")
        if len(path) == 1:
            path = ["vars", key]
        if path[0] == "vars":
            _set_var(data, path[1:], value, pos, diag)
        elif path[0] == "graph":
            _set_node_param(data, path[1:], value, pos, diag)
        elif path[0] in ("train", "name", "doc"):
            _set_path(data, path, value, pos, diag)
        else:
            diag.error(pos, f"cannot override '{key}'",
                       "override a var (d_model=512), vars.NAME, graph.NODE.PARAM or train.KEY...")


def _set_var(data: dict, path: list[str], value: Any, pos: SourcePos, diag: Diagnostics) -> None:
    vars_ = data.get("vars")
    if len(path) != 1 or not isinstance(vars_, dict) or path[0] not in vars_:
        known = list(vars_) if isinstance(vars_, dict) else []
        diag.error(pos, f"unknown var '{'.'.join(path)}'", choices_hint(".".join(path), known, "vars of this spec"))
        return
    vars_[path[0]] = value
    if isinstance(vars_, Map):
        vars_.value_pos[path[0]] = pos


def _set_node_param(data: dict, path: list[str], value: Any, pos: SourcePos, diag: Diagnostics) -> None:
    nodes = data.get("graph") if isinstance(data.get("graph"), list) else []
    if len(path) != 2:
        diag.error(pos, "graph overrides take the form graph.NODE.PARAM=value")
        return
    names = [n.get("name") for n in nodes if isinstance(n, dict)]
    for node in nodes:
        if isinstance(node, dict) and node.get("name") == path[0]:
            if path[1] in ("name", "op", "block", "in"):
                diag.error(pos, f"cannot override '{path[1]}' of a node", "override parameters only")
                return
            node[path[1]] = value
            if isinstance(node, Map):
                node.value_pos[path[1]] = pos
                node.key_pos.setdefault(path[1], pos)
            return
    diag.error(pos, f"no top-level node '{path[0]}'", choices_hint(path[0], [str(n) for n in names], "nodes"))


def _set_path(data: dict, path: list[str], value: Any, pos: SourcePos, diag: Diagnostics) -> None:
    target = data
    for part in path[:-1]:
        nxt = target.get(part)
        if nxt is None:
            nxt = Map(pos=pos)
            target[part] = nxt
        if not isinstance(nxt, dict):
            diag.error(pos, f"cannot set '{'.'.join(path)}': '{part}' is not a mapping")
            return
        target = nxt
    target[path[-1]] = value
