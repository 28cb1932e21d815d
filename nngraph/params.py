"""Checking parameter values against their :class:`~nngraph.registry.Param`, and their JSON Schema.

One definition serves both: :func:`check_value` validates a resolved value with
messages that say expected vs got, and :func:`param_schema` is the same rule
written as JSON Schema for editors.
"""

from __future__ import annotations

import math
from typing import Any

from .expr import shown
from .registry import Param

MAX_WALKED = 1_000_000  # values are bounded by the expression and YAML caps well below this

EXPR_SCHEMA = {"type": "string", "pattern": r"^\s*\$\{.*\}\s*$", "description": "an expression, e.g. ${4 * d_model}"}


def _kind_name(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    for t, name in ((int, "integer"), (float, "number"), (str, "string"), (list, "list"), (dict, "mapping")):
        if isinstance(value, t):
            return name
    return "null" if value is None else type(value).__name__


def range_problem(value: float, lo: float | None, hi: float | None) -> str | None:
    """Why a number is outside ``[lo, hi]`` (None: it is inside); the one range check of op params and train keys.

    NaN and the infinities are never in range: ``nan < lo`` is False, so comparisons alone let a NaN
    dropout or an infinite capacity factor through to the built model.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, got {value}"
    if lo is not None and value < lo:
        return f"must be >= {lo}, got {value}"
    if hi is not None and value > hi:
        return f"must be <= {hi}, got {value}"
    return None


def finite_problem(value: Any) -> str | None:
    """Why a value is not finite: a NaN or an infinity in it, at any depth of its lists and mappings (None: none)."""
    stack, seen = [value], 0
    while stack and seen <= MAX_WALKED:
        item = stack.pop()
        seen += 1
        if isinstance(item, float) and not math.isfinite(item):
            return range_problem(item, None, None) if item is value else f"must hold finite numbers only, got {item}"
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_value(p: Param, value: Any) -> tuple[Any, list[tuple[str, str]]]:
    """Validate (and normalize) one resolved value; returns (value, [(sub-path, problem)])."""
    if value is None and p.default is None:
        return None, []
    problem = finite_problem(value)
    if problem:
        return value, [("", problem)]
    kind = p.kind
    if kind == "int":
        if not _is_int(value):
            return value, [("", f"expected an integer, got {_kind_name(value)} {shown(value)}")]
        problem = range_problem(value, p.min, p.max)
        return value, [("", problem)] if problem else []
    if kind == "float":
        if not (_is_int(value) or isinstance(value, float)):
            return value, [("", f"expected a number, got {_kind_name(value)} {shown(value)}")]
        problem = range_problem(value, p.min, p.max)
        return float(value), [("", problem)] if problem else []
    if kind == "bool":
        if not isinstance(value, bool):
            return value, [("", f"expected true or false, got {_kind_name(value)} {shown(value)}")]
        return value, []
    if kind in ("str", "ref"):
        if not isinstance(value, str):
            return value, [("", f"expected a string, got {_kind_name(value)} {shown(value)}")]
        return value, []
    if kind == "enum":
        if value not in (p.choices or ()):
            listed = ", ".join(str(c) for c in p.choices or ())
            return value, [("", f"expected one of {listed}; got {shown(value)}")]
        return value, []
    if kind in ("ints", "int_list"):
        items = [value] if (kind == "ints" and _is_int(value)) else value
        if not isinstance(items, list) or not all(_is_int(v) for v in items):
            want = "an integer or a list of integers" if kind == "ints" else "a list of integers"
            return value, [("", f"expected {want}, got {_kind_name(value)} {shown(value)}")]
        for v in items:
            problem = range_problem(v, p.min, p.max)
            if problem:
                return value, [("", problem)]
        return (list(value) if isinstance(value, list) else value), []
    if kind == "custom":
        if not p.check:
            return value, []
        try:
            return value, list(p.check(value))
        except Exception as exc:  # noqa: BLE001 - a checker's crash must not escape as a traceback
            return value, [("", f"cannot check {_kind_name(value)} {shown(value)}: internal error in the parameter's checker "
                                f"({type(exc).__name__}: {exc}); this is an nngraph bug")]
    raise ValueError(f"unknown param kind {kind}")


def _base_schema(p: Param) -> dict:
    kind = p.kind
    if kind == "int":
        s: dict = {"type": "integer"}
    elif kind == "float":
        s = {"type": "number"}
    elif kind == "bool":
        s = {"type": "boolean"}
    elif kind in ("str", "ref"):
        s = {"type": "string"}
    elif kind == "enum":
        s = {"enum": list(p.choices or ())}
    elif kind == "ints":
        item = {"type": "integer"} | ({"minimum": p.min} if p.min is not None else {})
        return {"anyOf": [item, {"type": "array", "items": item}]}
    elif kind == "int_list":
        item = {"type": "integer"} | ({"minimum": p.min} if p.min is not None else {})
        return {"type": "array", "items": item}
    elif kind == "custom":
        return dict(p.schema or {})
    else:
        raise ValueError(kind)
    if p.min is not None and kind in ("int", "float"):
        s["minimum"] = p.min
    if p.max is not None and kind in ("int", "float"):
        s["maximum"] = p.max
    return s


def param_schema(p: Param) -> dict:
    """JSON Schema for a parameter: its own type, or an expression string."""
    base = _base_schema(p)
    schema: dict = {"description": p.doc, "anyOf": [base, EXPR_SCHEMA]}
    if not p.required and p.default is not None:
        schema["default"] = p.default
    return schema
