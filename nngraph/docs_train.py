"""The train reference (``docs/train-reference.md``), generated from the train key registry (:mod:`.train_keys`).

``nngraph docs --train -o docs/train-reference.md`` writes it; a test regenerates it and fails when the
committed file is stale (like the spec reference). Types come from the one value-schema table
(:mod:`.values`), so the reference, the JSON Schema and the checker say the same thing.
"""

from __future__ import annotations

from .docs import _anchor
from .docs_cells import _bounds, _cell, _value
from .train_keys import BUILTINS, SCHEMA, TASK_ROLES, TASKS, F
from .values import KINDS

TRAIN_DOCS_COMMAND = "nngraph docs --train -o docs/train-reference.md"


def key_type(f: F) -> str:
    """The key's type as the docs name it (from the kinds table)."""
    return KINDS[f.kind].type_name


def key_default(f: F) -> str:
    """``—`` (unset: the doc says what happens) or the default as inline code."""
    return "—" if f.default is None else _value(f.default)


def key_range(f: F) -> str:
    """Choices of an enum, bounds of numbers (each number of a pair)."""
    if f.kind == "enum":
        return ", ".join(_value(c) for c in f.choices)
    if f.kind in ("int", "float", "float_pair"):
        return _bounds(f.min, f.max, each="each " if f.kind == "float_pair" else "")
    return ""


def _table(fields: dict[str, F], prefix: str) -> list[str]:
    out = ["| key | type | default | range / choices | description |", "| --- | --- | --- | --- | --- |"]
    for name, f in fields.items():
        if f.kind == "section":
            link = f"[section](#{_anchor(prefix + name)})"
            out.append(f"| `{name}` | {link} |  |  | {_cell(f.doc)} |")
        else:
            out.append(f"| `{name}` | {_cell(key_type(f))} | {_cell(key_default(f))} | {_cell(key_range(f))} | "
                       f"{_cell(f.doc)} |")
    return out + [""]


def _section(name: str, f: F, prefix: str) -> list[str]:
    dotted = prefix + name
    out = [f"## {dotted}", "", f.doc[0].upper() + f.doc[1:] + ".", ""]
    if f.shorthand:
        sample = f.section[f.shorthand].choices[0] if f.section[f.shorthand].choices else "..."
        out += [f"Shorthand: `{name}: {sample}` is `{name}: {{{f.shorthand}: {sample}}}`.", ""]
    if f.optional_section:
        out += [f"Off unless written; `{name}: true` turns it on with the defaults, `{name}: false` keeps it off.", ""]
    out += _table(f.section, dotted + ".")
    for sub, g in f.section.items():
        if g.kind == "section":
            out += _section(sub, g, dotted + ".")
    return out


def train_reference() -> str:
    """The whole train reference as Markdown (deterministic: the registry's key order)."""
    sections = [(k, f) for k, f in SCHEMA.items() if f.kind == "section"]
    out = ["# Train reference", "",
           f"<!-- Generated from the train key registry (nngraph/train_keys.py) by `{TRAIN_DOCS_COMMAND}`. "
           "Do not edit by hand. -->", "",
           "The `train:` section of a spec (or the file given to `nngraph train --config FILE`) configures "
           "`nngraph train`. Every key is optional; an unset key (or `null`) takes its default. A value may be an "
           "expression such as `${2 * batch}` (list items too). `nngraph validate` checks the section and reports "
           "mistakes at their line; `docs/nngraph.schema.json` gives editors the same types, ranges and choices.", "",
           "Tasks: " + ", ".join(f"`{t}`" for t in TASKS) + ". Tasks that train several networks of a spec's "
           "`networks:` and their roles: " + "; ".join(f"`{t}`: {', '.join(r)}" for t, r in TASK_ROLES.items()) + ".",
           "", "Built-in datasets (`data: NAME`): " + ", ".join(f"`{b}`" for b in BUILTINS) + ".", "",
           "## Contents", "", "- [top-level keys](#top-level-keys)"]
    out += [f"- [{k}](#{_anchor(k)})" for k, _ in sections]
    out += ["", "## top-level keys", ""] + _table(SCHEMA, "")
    for name, f in sections:
        out += _section(name, f, "")
    return "\n".join(out).rstrip() + "\n"


__all__ = ["TRAIN_DOCS_COMMAND", "key_default", "key_range", "key_type", "train_reference"]
