"""One value-schema language: every kind of value an op parameter or a ``train:`` key can hold.

:data:`KINDS` maps a kind name to a :class:`Kind`: its checker (validate and normalize a resolved value,
messages that say expected vs got), its JSON Schema fragment (what editors check) and its type name in
the generated docs. Op :class:`~nngraph.registry.Param` s (:mod:`nngraph.params`) and train keys
(:class:`~nngraph.train_keys.F`, :mod:`nngraph.train_schema`) are both read through this one table, so a
kind means the same thing to the loader, the schema and the docs.

A *spec* is anything with ``kind``, ``min``, ``max`` and ``choices`` (custom kinds add ``schema`` and
``check``). Messages name the wrong value in the voice of where it was written (:class:`Voice`): op
parameters say ``got integer 3``, train keys ``got an integer 3``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from .errors import did_you_mean
from .expr import shown

MAX_WALKED = 1_000_000  # values are bounded by the expression and YAML caps well below this

#: a whole-string ``${...}`` expression: allowed wherever the loader resolves expressions
EXPR_SCHEMA = {"type": "string", "pattern": r"^\s*\$\{.*\}\s*$", "description": "an expression, e.g. ${4 * d_model}"}

#: (normalized value, [(sub-path, problem)], hint); no problems: the value is valid
Verdict = tuple[Any, list[tuple[str, str]], "str | None"]

_NAMES = ((int, "integer"), (float, "number"), (str, "string"), (list, "list"), (dict, "mapping"))


def kind_name(value: Any) -> str:
    """``integer``, ``bool``, ``mapping``, ... (op parameters' messages)."""
    if isinstance(value, bool):
        return "bool"
    name = next((n for t, n in _NAMES if isinstance(value, t)), None)
    return name or ("null" if value is None else type(value).__name__)


def kind_article(value: Any) -> str:
    """``an integer``, ``a boolean``, ``a mapping``, ... (train keys' messages)."""
    if isinstance(value, bool):
        return "a boolean"
    name = next((n for t, n in _NAMES if isinstance(value, t)), None)
    if name:
        return ("an " if name[0] in "aeiou" else "a ") + name
    return "null" if value is None else type(value).__name__


@dataclass(frozen=True)
class Voice:
    """How a message names the wrong value and separates an enum's choices from it."""

    name: Callable[[Any], str]
    enum_sep: str

    def got(self, value: Any) -> str:
        """``integer 3`` / ``an integer 3``."""
        return f"{self.name(value)} {shown(value)}"


OP_VOICE = Voice(kind_name, "; ")
TRAIN_VOICE = Voice(kind_article, ", ")


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


def is_int(v: Any) -> bool:
    """An integer that is not a bool (YAML's true is not 1 here)."""
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v: Any) -> bool:
    """An int or a float, not a bool."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _ranged(value: Any, s: Any) -> Verdict:
    problem = range_problem(value, s.min, s.max)
    return value, [("", problem)] if problem else [], None


def _wrong(value: Any, message: str, hint: str | None = None) -> Verdict:
    return value, [("", message)], hint


# ----- checkers: (spec, resolved non-null value, voice) -> Verdict ---------------------------------------------
def _int(s: Any, v: Any, voice: Voice) -> Verdict:
    return _ranged(v, s) if is_int(v) else _wrong(v, f"expected an integer, got {voice.got(v)}")


def _float(s: Any, v: Any, voice: Voice) -> Verdict:
    if not is_num(v):
        return _wrong(v, f"expected a number, got {voice.got(v)}", "write numbers like 3.0e-4 (YAML needs the dot)")
    return (float(v),) + _ranged(v, s)[1:]  # type: ignore[return-value]


def _bool(s: Any, v: Any, voice: Voice) -> Verdict:
    return (v, [], None) if isinstance(v, bool) else _wrong(v, f"expected true or false, got {voice.got(v)}")


def _tri(s: Any, v: Any, voice: Voice) -> Verdict:
    if isinstance(v, bool) or v == "auto":
        return v, [], None
    return _wrong(v, f"expected true, false or auto, got {voice.got(v)}")


def _str(s: Any, v: Any, voice: Voice) -> Verdict:
    return (v, [], None) if isinstance(v, str) else _wrong(v, f"expected a string, got {voice.got(v)}")


def _int_or_str(s: Any, v: Any, voice: Voice) -> Verdict:
    return (v, [], None) if isinstance(v, str) or is_int(v) else _wrong(v, f"expected a name or an index, got {voice.name(v)}")


def _enum(s: Any, v: Any, voice: Voice) -> Verdict:
    choices = tuple(s.choices or ())
    if v in choices:
        return v, [], None
    listed = ", ".join(map(str, choices))
    return _wrong(v, f"expected one of {listed}{voice.enum_sep}got {shown(v)}", did_you_mean(str(v), choices))


def _ints(s: Any, v: Any, voice: Voice) -> Verdict:
    items = [v] if (s.kind == "ints" and is_int(v)) else v
    if not isinstance(items, list) or not all(is_int(x) for x in items):
        want = "an integer or a list of integers" if s.kind == "ints" else "a list of integers"
        return _wrong(v, f"expected {want}, got {voice.got(v)}")
    problem = next((p for p in (range_problem(x, s.min, s.max) for x in items) if p), None)
    if problem:
        return _wrong(v, problem)
    return (list(v) if isinstance(v, list) else v), [], None


def _float_pair(s: Any, v: Any, voice: Voice) -> Verdict:
    if not isinstance(v, list) or len(v) != 2 or not all(is_num(x) for x in v):
        return _wrong(v, f"expected two numbers [a, b], got {shown(v)}")
    problem = next((p for p in (range_problem(x, s.min, s.max) for x in v) if p), None)
    return [float(x) for x in v], [("", problem)] if problem else [], None


def _str_list(s: Any, v: Any, voice: Voice) -> Verdict:
    items = [v] if isinstance(v, str) else v
    if not isinstance(items, list) or not all(isinstance(x, str) for x in items) or not items:
        return _wrong(v, f"expected a list of name patterns, got {shown(items)}")
    return list(items), [], None


def _bool_or_names(s: Any, v: Any, voice: Voice) -> Verdict:
    if isinstance(v, bool):
        return v, [], None
    items = [v] if isinstance(v, str) else v
    if not isinstance(items, list) or not items or not all(isinstance(x, str) for x in items):
        return _wrong(v, f"expected true, false or a list of names, got {shown(v)}")
    return list(items), [], None


def _map_of(what: str, ok: Callable[[Any], bool], norm: Callable[[Any], Any]) -> Callable[[Any, Any, Voice], Verdict]:
    """A checker for ``{name: value}`` mappings whose values pass ``ok`` (``what`` says what they must be)."""

    def check(s: Any, v: Any, voice: Voice) -> Verdict:
        if not isinstance(v, dict):
            return _wrong(v, f"expected a mapping, got {voice.name(v)}")
        for key, val in v.items():
            if not isinstance(key, str):
                return _wrong(v, f"keys must be names, got {shown(key)}")
            if not ok(val):
                return _wrong(v, f"value of '{key}' must be {what}, got {voice.got(val)}")
        return {str(a): norm(b) for a, b in v.items()}, [], None

    return check


def _custom(s: Any, v: Any, voice: Voice) -> Verdict:
    if not s.check:
        return v, [], None
    try:
        return v, list(s.check(v)), None
    except Exception as exc:  # noqa: BLE001 - a checker's crash must not escape as a traceback
        return _wrong(v, f"cannot check {voice.got(v)}: internal error in the parameter's checker "
                         f"({type(exc).__name__}: {exc}); this is an nngraph bug")


# ----- JSON Schema fragments -----------------------------------------------------------------------------------
def _bounds(s: Any) -> dict:
    return {k: v for k, v in (("minimum", s.min), ("maximum", s.max)) if v is not None}


def _int_item(s: Any) -> dict:
    return {"type": "integer"} | _bounds(s)


@dataclass(frozen=True)
class Kind:
    """One kind of value: how it is checked, what JSON Schema says it is, what the docs call it."""

    check: Callable[[Any, Any, Voice], Verdict]
    schema: Callable[[Any], dict]
    type_name: str


KINDS: dict[str, Kind] = {
    "int": Kind(_int, _int_item, "int"),
    "float": Kind(_float, lambda s: {"type": "number"} | _bounds(s), "float"),
    "bool": Kind(_bool, lambda s: {"type": "boolean"}, "bool"),
    "tri": Kind(_tri, lambda s: {"enum": [True, False, "auto"]}, "true, false or `auto`"),
    "str": Kind(_str, lambda s: {"type": "string"}, "string"),
    "ref": Kind(_str, lambda s: {"type": "string"}, "node name"),
    "int_or_str": Kind(_int_or_str, lambda s: {"type": ["integer", "string"]}, "name or index"),
    "enum": Kind(_enum, lambda s: {"enum": list(s.choices or ())}, "enum"),
    "ints": Kind(_ints, lambda s: {"anyOf": [_int_item(s), {"type": "array", "items": _int_item(s)}]},
                 "int or list of ints"),
    "int_list": Kind(_ints, lambda s: {"type": "array", "items": _int_item(s)}, "list of ints"),
    "float_pair": Kind(_float_pair, lambda s: {"type": "array", "minItems": 2, "maxItems": 2,
                                               "items": {"type": "number"} | _bounds(s)}, "two floats"),
    "str_list": Kind(_str_list, lambda s: {"anyOf": [{"type": "string"}, {"type": "array", "minItems": 1,
                                                                           "items": {"type": "string"}}]},
                     "pattern or list of patterns"),
    "bool_or_names": Kind(_bool_or_names, lambda s: {"anyOf": [{"type": "boolean"}, {"type": "string"}, {
        "type": "array", "minItems": 1, "items": {"type": "string"}}]}, "true, false or list of names"),
    "str_map": Kind(_map_of("a name", lambda x: isinstance(x, str), lambda x: x),
                    lambda s: {"type": "object", "additionalProperties": {"type": "string"}}, "mapping name → name"),
    "num_map": Kind(_map_of("a number (a weight)", is_num, float),
                    lambda s: {"type": "object", "additionalProperties": {"type": "number"}}, "mapping name → float"),
    "custom": Kind(_custom, lambda s: dict(s.schema or {}), "value"),
}


def kind_of(spec: Any) -> Kind:
    """The :class:`Kind` of a spec (ValueError for a kind no table row declares)."""
    try:
        return KINDS[spec.kind]
    except KeyError:
        raise ValueError(f"unknown param kind {spec.kind}") from None


def check(spec: Any, value: Any, voice: Voice) -> Verdict:
    """Validate and normalize one resolved, non-null value against its spec (NaN/inf refused at any depth)."""
    problem = finite_problem(value)
    if problem:
        return value, [("", problem)], "write a finite number (YAML's .nan and .inf are not)"
    return kind_of(spec).check(spec, value, voice)


def with_expressions(schema: dict) -> dict:
    """``schema`` where every value position (itself, list items, mapping values) may also be a ``${...}``
    expression: the loader resolves expressions at any depth of a parameter's value before checking it."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in out:
            out[key] = [_inner(s) for s in out[key]]
    if isinstance(out.get("items"), dict):
        out["items"] = with_expressions(out["items"])
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = with_expressions(out["additionalProperties"])
    if isinstance(out.get("properties"), dict):
        out["properties"] = {k: (v if k == "type" else with_expressions(v)) for k, v in out["properties"].items()}
    return out if _is_expr_friendly(out) else {"anyOf": [out, EXPR_SCHEMA]}


def _inner(schema: Any) -> Any:
    """A branch of an anyOf: its children get expressions, the branch itself needs no second wrap."""
    if not isinstance(schema, dict):
        return schema
    wrapped = with_expressions(schema)
    if "anyOf" in wrapped and wrapped["anyOf"][-1] is EXPR_SCHEMA and len(wrapped) == 1:
        return wrapped["anyOf"][0]
    return wrapped


def _is_expr_friendly(schema: dict) -> bool:
    """True when the schema already accepts an expression string (any string, or an explicit expression branch)."""
    if schema is EXPR_SCHEMA or schema == {} or schema.get("type") == "string" and set(schema) <= {"type", "description"}:
        return True
    return any(s is EXPR_SCHEMA or s == EXPR_SCHEMA for s in schema.get("anyOf", ()))
