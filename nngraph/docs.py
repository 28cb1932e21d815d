"""The spec reference (``docs/spec-reference.md``), generated from the op registry.

``nngraph docs -o docs/spec-reference.md`` writes it; a test regenerates it and
fails when the committed file is stale. Output is deterministic: families and the
ops of each family in alphabetical order (not registration order, which depends on
the order the op modules were imported in), no timestamps.
"""

from __future__ import annotations

import sys
from inspect import cleandoc  # the standard library's, not nngraph.inspect
from typing import Any

from .docs_cells import _cell, param_default, param_range, param_type
from .registry import OpDef, families

DOCS_COMMAND = "nngraph docs -o docs/spec-reference.md"



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
