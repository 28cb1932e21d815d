"""Table cells of the generated references: a parameter's type, default and range, from the value-schema table.

Shared by the spec reference (docs.py), its attention section (docs_attention.py) and the train reference
(docs_train.py), which is why it sits below all three.
"""

from __future__ import annotations

import json
from typing import Any

from .registry import REQUIRED, Param
from .values import KINDS


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _value(value: Any) -> str:
    """A default/choice value as YAML-ish inline code."""
    if isinstance(value, str):
        return f"`{value}`"
    return f"`{json.dumps(value, ensure_ascii=False)}`"


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(i for i in items if i))


def _schema_type(schema: dict | None) -> str:
    """A short type name for a JSON Schema (custom parameters): ``int or list of ints``, ``string or mapping``."""
    if not schema:
        return "value"
    if "anyOf" in schema:
        return " or ".join(_unique([_schema_type(s) for s in schema["anyOf"]]))
    if "enum" in schema:
        return "string" if all(isinstance(v, str) for v in schema["enum"]) else "value"
    if "const" in schema:
        return _schema_type({"enum": [schema["const"]]})
    kind = schema.get("type")
    if kind == "array":
        item = _schema_type(schema.get("items")) if isinstance(schema.get("items"), dict) else "value"
        return f"list of {item}s" if " " not in item else f"list of ({item})"
    if kind == "object":
        return "mapping"
    if isinstance(kind, list):
        return " or ".join(_schema_type({"type": k}) for k in kind)
    return {"integer": "int", "number": "float", "boolean": "bool"}.get(kind, kind or "value")


def _bounds(lo: float | None, hi: float | None, lo_open: bool = False, hi_open: bool = False, each: str = "") -> str:
    if lo is not None and hi is not None:
        return f"{each}{'(' if lo_open else '['}{_num(lo)}, {_num(hi)}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{each}{'>' if lo_open else '≥'} {_num(lo)}"
    if hi is not None:
        return f"{each}{'<' if hi_open else '≤'} {_num(hi)}"
    return ""


def _schema_range(schema: dict | None) -> str:
    """Bounds and choices stated by a JSON Schema (custom parameters)."""
    if not schema:
        return ""
    if "anyOf" in schema:
        parts = [_schema_range(s) for s in schema["anyOf"]]
        consts = [s["properties"]["type"]["const"] for s in schema["anyOf"]
                  if isinstance(s.get("properties", {}).get("type"), dict) and "const" in s["properties"]["type"]]
        if consts:
            parts = [p for p in parts if p] + ["{type: " + " | ".join(f"`{c}`" for c in consts) + ", ...}"]
        return "; ".join(_unique(parts))
    if "enum" in schema:
        return ", ".join(_value(v) for v in schema["enum"])
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        inner = _schema_range(schema["items"])
        return f"each {inner}" if inner and not inner.startswith("each") else inner
    lo_x, hi_x = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    lo = schema.get("minimum", lo_x)
    hi = schema.get("maximum", hi_x)
    return _bounds(lo, hi, "minimum" not in schema and lo_x is not None, "maximum" not in schema and hi_x is not None)


def param_type(p: Param) -> str:
    """A short human name for the parameter's type."""
    if p.kind == "custom":
        return _schema_type(p.schema)
    return KINDS[p.kind].type_name if p.kind in KINDS else p.kind


def param_default(p: Param) -> str:
    """``required``, ``—`` (unset/None) or the default as inline code."""
    if p.default is REQUIRED:
        return "**required**"
    if p.default is None:
        return "—"
    return _value(p.default)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def param_range(p: Param) -> str:
    """Bounds (``≥ 1``, ``[0, 1]``) or the allowed choices."""
    if p.kind == "enum":
        return ", ".join(_value(c) for c in p.choices or ())
    if p.kind == "custom":
        return _schema_range(p.schema)
    if p.kind in ("int", "float", "ints", "int_list"):
        return _bounds(p.min, p.max, each="each " if p.kind in ("ints", "int_list") else "")
    return ""
