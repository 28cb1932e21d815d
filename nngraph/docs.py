"""The spec reference (``docs/spec-reference.md``), generated from the op registry.

``nngraph docs -o docs/spec-reference.md`` writes it; a test regenerates it and
fails when the committed file is stale. Output is deterministic: families and the
ops of each family in alphabetical order (not registration order, which depends on
the order the op modules were imported in), no timestamps.
"""

from __future__ import annotations

import json
import sys
from inspect import cleandoc  # the standard library's, not nngraph.inspect
from typing import Any

from .registry import REQUIRED, OpDef, Param, families
from .values import KINDS

DOCS_COMMAND = "nngraph docs -o docs/spec-reference.md"



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


def _inputs_text(d: OpDef) -> str:
    if not d.inputs:
        return "none (a source node)"
    parts = []
    for i in d.inputs:
        if i.startswith("*"):
            parts.append(f"`{i[1:]}` (any number, given as a list)")
        elif i.endswith("?"):
            parts.append(f"`{i[:-1]}` (optional)")
        else:
            parts.append(f"`{i}`")
    return ", ".join(parts)


def _outputs_text(d: OpDef) -> str:
    if not callable(d.outputs):
        names = d.outputs
        if names == ("out",):
            return "`out` (refer to the node by its name)"
        return ", ".join(f"`{n}`" for n in names) + " (refer to them as `node.output`)"
    try:
        example = d.output_names({k: v for k, v in (d.example or {}).items() if k != "in"})
        seen = ", ".join(f"`{n}`" for n in example)
        return f"named by the parameters (for the example: {seen}); refer to them as `node.output`"
    except Exception:  # noqa: BLE001 - a docs generator must not die on an odd output rule
        return "named by the parameters; refer to them as `node.output`"


def _flow(value: Any) -> str:
    """One value as inline (flow-style) YAML."""
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=1000).strip()
    return text[:-3].rstrip() if text.endswith("\n...") else text


def example_yaml(d: OpDef) -> str:
    """The op's example node as a YAML list item (``name`` and ``op`` first, values inline)."""
    node: dict[str, Any] = {"name": d.name, "op": d.name}
    node.update(d.example or {})
    lines = [f"{'- ' if i == 0 else '  '}{_flow(k)}: {_flow(v)}" for i, (k, v) in enumerate(node.items())]
    return "\n".join(lines)


def _family_doc(ops: list[OpDef]) -> str:
    """The docstrings of the modules that define this family's ops (first paragraph each)."""
    seen, paras = set(), []
    for d in ops:
        mod = getattr(d.infer, "__module__", None)
        if mod in seen or mod not in sys.modules:
            continue
        seen.add(mod)
        doc = (sys.modules[mod].__doc__ or "").strip()
        if doc:
            paras.append(" ".join(doc.split("\n\n")[0].split()))
    return "\n\n".join(paras)


def op_section(d: OpDef) -> list[str]:
    """The Markdown section for one op."""
    out = [f"### `{d.name}`", ""]
    doc = cleandoc(d.doc or "") or "(undocumented)"
    out += [doc, ""]
    out.append(f"- **inputs:** {_inputs_text(d)}")
    out.append(f"- **outputs:** {_outputs_text(d)}")
    out.append(f"- **learnable parameters:** {'yes' if d.count_params else 'none'}")
    out.append("")
    if d.params:
        out += ["| parameter | type | default | range / choices | description |",
                "| --- | --- | --- | --- | --- |"]
        for name, p in d.params.items():
            out.append(f"| `{name}` | {_cell(param_type(p))} | {_cell(param_default(p))} | "
                       f"{_cell(param_range(p))} | {_cell(p.doc)} |")
        out.append("")
    else:
        out += ["No parameters.", ""]
    out += ["Example:", "", "```yaml", example_yaml(d), "```", ""]
    return out


def _anchor(text: str) -> str:
    return "".join(c for c in text.lower().replace(" ", "-") if c.isalnum() or c in "-_")


def _dims_text() -> list[str]:
    """The ``dims:`` section's keys, from its registry (nngraph/spec/dims.py)."""
    from .spec.dims import DIM_KEYS, EXAMPLE

    out = ["Symbolic dims (`batch`, `seq`) are sizes >= 1; shape rules compare dim expressions exactly "
           "(`time+1` vs `time+2` is an error) and warn when they cannot decide (`height` vs `width`; an error "
           f"with `validate --strict`). The top-level `dims:` section decides such pairs, e.g. `{EXAMPLE}`; "
           "a symbol maps to a dim expression (a relation) or to constraints:", ""]
    return out + [f"- `{key}`: {text}" for key, text in DIM_KEYS.items()] + [""]


def spec_reference() -> str:
    """The whole reference as Markdown."""
    from .schema import _IN, _META
    from .types import DTYPES

    # Sorted by name: the registry's order follows the order the op modules happened to be imported in.
    fams = {k: sorted(v, key=lambda d: d.name) for k, v in sorted(families().items())}
    n_ops = sum(len(v) for v in fams.values())
    out = ["# Spec reference", "",
           f"<!-- Generated from the op registry by `{DOCS_COMMAND}`. Do not edit by hand. -->", "",
           f"{n_ops} primitives in {len(fams)} families. Every parameter value may also be an expression "
           "such as `${4 * d_model}`; see the README for the spec language (vars, blocks, imports, overrides).", "",
           "Keys every op node accepts besides its parameters:", ""]
    for key, schema in _META.items():
        desc = schema.get("description") or (_IN["description"] if key == "in" else "")
        out.append(f"- `{key}`: {desc}")
    out += ["- `op`: the primitive (one of the ops below)", "",
            "Graph input dtypes: " + ", ".join(f"`{t}`" for t in DTYPES) + ".", "", *_dims_text(), "## Contents", ""]
    used: dict[str, int] = {"spec-reference": 1, "contents": 1}

    def anchor(text: str) -> str:  # GitHub's rule: repeated headings get -1, -2, ...
        base = _anchor(text)
        n = used.get(base, 0)
        used[base] = n + 1
        return base if n == 0 else f"{base}-{n}"

    for fam, ops in fams.items():
        fa = anchor(fam)
        links = ", ".join(f"[`{d.name}`](#{anchor(d.name)})" for d in ops)
        out.append(f"- [{fam}](#{fa}): {links}")
    out += [f"- [attention masks and positions](#{anchor('attention masks and positions')})", ""]
    for fam, ops in fams.items():
        out += [f"## {fam}", ""]
        fdoc = _family_doc(ops)
        if fdoc:
            out += [fdoc, ""]
        for d in ops:
            out += op_section(d)
    from .docs_attention import attention_sections  # below this module: it reuses the table cells above

    out += attention_sections()
    return "\n".join(out).rstrip() + "\n"
