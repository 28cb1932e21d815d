"""The spec reference's part on attention masks and position encodings, generated from their registries.

Each registered mask (``@register_mask``) and position encoding (``register_position``) gets a section with
its docstring (the formula and its conventions: which pairs a window keeps, which dims RoPE turns, how T5
buckets distances) and a table of its sub-parameters, typed by the same value-schema table as op parameters.
"""

from __future__ import annotations

from inspect import cleandoc
from typing import Any

from .docs_cells import _cell, param_default, param_range, param_type
from .registry import Param


def _registries() -> tuple[dict[str, Any], dict[str, Any]]:
    """The mask and position registries (imported here only: their home may move, this is the one place)."""
    from .attention import masks
    from .attention import positions

    return masks.MASKS, positions.POSITIONS


def _params_table(params: dict[str, Param]) -> list[str]:
    if not params:
        return ["No parameters.", ""]
    out = ["| parameter | type | default | range / choices | description |", "| --- | --- | --- | --- | --- |"]
    for name, p in params.items():
        out.append(f"| `{name}` | {_cell(param_type(p))} | {_cell(param_default(p))} | {_cell(param_range(p))} | "
                   f"{_cell(p.doc)} |")
    return out + [""]


def _written(kind: str, name: str, params: dict[str, Param]) -> str:
    required = [k for k, p in params.items() if p.required]
    if not required:
        return f"`{kind}: {name}`" + (f" or `{kind}: {{type: {name}, ...}}`" if params else "")
    return f"`{kind}: {{type: {name}, " + ", ".join(f"{k}: ..." for k in required) + "}`"


def attention_sections() -> list[str]:
    """Markdown lines: every mask, then every position encoding, sorted by name."""
    masks, positions = _registries()
    out = ["## attention masks and positions", "",
           "The `mask` and `position` parameters of `attention` (and of the ops built on it) take a registered "
           "name or a mapping `{type: NAME, param: value, ...}`; masks combine with `{all: [...]}` (every mask "
           "allows the pair), `{any: [...]}` (one does) and `{not: mask}`. A mask says which (query i, key j) pairs "
           "are visible; a position encoding is a rotation of queries and keys (`qk_transform`) or an additive score "
           "bias (`score_bias`).", ""]
    for name in sorted(masks):
        m = masks[name]
        out += [f"### mask `{name}`", "", cleandoc(m.doc) or "(undocumented)", "", f"Written {_written('mask', name, m.params)}."
                + (f" Needs one of the graph inputs {', '.join(f'`{i}`' for i in m.needs)} connected to the node." if m.needs else ""),
                ""]
        out += _params_table(m.params)
    for name in sorted(positions):
        p = positions[name]
        out += [f"### position `{name}`", "", cleandoc(p.doc) or "(undocumented)", "",
                f"Written {_written('position', name, p.params)}; kind: `{p.kind}`.", ""]
        out += _params_table(p.params)
    return out


__all__ = ["attention_sections"]
