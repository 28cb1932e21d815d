"""Checking op parameter values against their :class:`~nngraph.registry.Param`, and their JSON Schema.

Both read the one value-schema table of :mod:`nngraph.values` (kind -> checker, JSON Schema fragment,
doc type name), which train keys use too: :func:`check_value` validates a resolved value with messages
that say expected vs got, and :func:`param_schema` is the same rule written as JSON Schema for editors.
"""

from __future__ import annotations

from typing import Any

from .registry import Param
from .values import EXPR_SCHEMA, OP_VOICE, check, finite_problem, kind_of, range_problem, with_expressions


def check_value(p: Param, value: Any) -> tuple[Any, list[tuple[str, str]]]:
    """Validate (and normalize) one resolved value; returns (value, [(sub-path, problem)])."""
    if value is None and p.default is None:
        return None, []
    value, problems, _hint = check(p, value, OP_VOICE)  # the loader's hint for a parameter is its doc
    return value, problems


def param_schema(p: Param) -> dict:
    """JSON Schema for a parameter: its own type, or an expression string (at any depth, as the loader allows)."""
    base = with_expressions(kind_of(p).schema(p))
    schema: dict = {"description": p.doc, "anyOf": base["anyOf"] if _expr_wrapped(base) else [base, EXPR_SCHEMA]}
    if not p.required and p.default is not None:
        schema["default"] = p.default
    return schema


def _expr_wrapped(schema: dict) -> bool:
    return set(schema) == {"anyOf"} and schema["anyOf"][-1] is EXPR_SCHEMA


__all__ = ["EXPR_SCHEMA", "check_value", "finite_problem", "param_schema", "range_problem"]
