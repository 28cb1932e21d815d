"""JSON Schema (Draft 2020-12) for spec files, generated from the primitive registry.

Editors use it (via ``# yaml-language-server: $schema=...``) to complete op
names and parameters and to flag typos as people type. Every op contributes an
``if op == NAME then <its parameters>`` rule, so unknown parameters are flagged
per op; values may always be ``${...}`` expressions.
"""

from __future__ import annotations

from typing import Any

from .params import EXPR_SCHEMA, param_schema
from .registry import OpDef, registry
from .cost.expect import expect_schema
from .spec.dims import dims_schema
from .train_keys import SCHEMA as TRAIN_KEYS
from .train_keys import F
from .values import kind_of, with_expressions
from .types import DTYPES

SCHEMA_ID = "https://nngraph.dev/schema/spec-v1.json"

_NAME = {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}
_REF = {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"}
_IN = {"description": "input(s): a name, a list of names, or a mapping input -> name ('node.output' for multi-output nodes)",
       "anyOf": [{"$ref": "#/$defs/ref"}, {"type": "array", "items": {"$ref": "#/$defs/ref"}},
                 {"type": "object", "additionalProperties": {"$ref": "#/$defs/ref"}}]}
_META = {
    "name": {"$ref": "#/$defs/name", "description": "unique node name"},
    "in": {"$ref": "#/$defs/in"},
    "init": {"description": "initializer override: a name or {param: initializer}", "type": ["string", "object"]},
    "doc": {"type": "string", "description": "free-form note"},
}


def op_node_schema(definition: OpDef) -> dict:
    """The schema of one op node: meta keys plus the op's own parameters, nothing else."""
    props: dict[str, Any] = {"op": {"const": definition.name}, **_META}
    for pname, p in definition.params.items():
        props[pname] = param_schema(p)
    required = ["name", "op"] + [k for k, p in definition.params.items() if p.required]
    return {"description": definition.summary, "type": "object", "properties": props,
            "required": required, "additionalProperties": False}


def _block_use_schema() -> dict:
    return {
        "type": "object",
        "description": "a use of a block: its nodes are copied in (repeat: N stacks copies)",
        "properties": {
            "name": {"$ref": "#/$defs/name"}, "block": {"type": "string"}, "in": {"$ref": "#/$defs/in"},
            "repeat": {"anyOf": [{"type": "integer", "minimum": 0}, EXPR_SCHEMA]},
            "share": {"anyOf": [{"type": "boolean"}, {"$ref": "#/$defs/name"}, EXPR_SCHEMA],
                      "description": "true: the copies of a repeat share the first copy's weights; NAME: reuse the "
                                     "weights of that earlier use of the same block (Siamese, tied encoders)"},
            "with": {"type": "object", "description": "block parameters"},
            "doc": {"type": "string"},
        },
        "required": ["name", "block"], "additionalProperties": False,
    }


def _node_schema(ops: dict[str, OpDef]) -> dict:
    """A block use (it has ``block:``) or an op node, told apart by if/then/else rather than anyOf: editors and
    jsonschema then report the branch the user meant ("'linearr' is not one of [...ops]", an unexpected
    parameter of that op) instead of "missing property block"."""
    rules = [{"if": {"properties": {"op": {"const": name}}, "required": ["op"]},
              "then": {"$ref": f"#/$defs/op.{name}"}} for name in sorted(ops)]  # sorted: registry order follows import order
    op = {"enum": sorted(ops), "description": "the primitive (see docs/spec-reference.md)",
          "errorMessage": "unknown op: see docs/spec-reference.md for the primitives"}  # yaml-language-server's message
    return {"if": {"type": "object", "required": ["block"]}, "then": {"$ref": "#/$defs/block_use"},
            "else": {"type": "object", "required": ["name", "op"], "properties": {"op": op}, "allOf": rules}}


def _train_value(f: F) -> dict:
    """One train key: its kind's schema (list items may be expressions, as the checker resolves them), an
    expression, or null (an unset key takes its default)."""
    base = kind_of(f).schema(f)
    if isinstance(base.get("items"), dict):
        base = {**base, "items": {"anyOf": [base["items"], EXPR_SCHEMA]}}
    out: dict = {"description": f.doc, "anyOf": [base, EXPR_SCHEMA, {"type": "null"}]}
    if f.default is not None:
        out["default"] = f.default
    return out


def train_schema(fields: dict[str, F] | None = None, doc: str = "training configuration (see `nngraph train` and "
                 "docs/train-reference.md)") -> dict:
    """The ``train:`` section (or one of its sub-sections), generated from the train key registry."""
    fields = TRAIN_KEYS if fields is None else fields
    props = {k: (_train_section(f) if f.kind == "section" else _train_value(f)) for k, f in fields.items()}
    return {"type": "object", "description": doc, "properties": props, "additionalProperties": False}


def _train_section(f: F) -> dict:
    """A sub-section: a mapping, its shorthand value, null/true (all defaults) and, when optional, false (off)."""
    branches = [train_schema(f.section, f.doc), {"enum": [None, True] + ([False] if f.optional_section else [])}]
    if f.shorthand:
        branches.append(_train_value(f.section[f.shorthand]))
    return {"description": f.doc, "anyOf": branches}


def _input_schema() -> dict:
    dim = {"anyOf": [{"type": "integer", "minimum": 1}, {"$ref": "#/$defs/name"}, EXPR_SCHEMA]}
    props = {  # the loader resolves an input's whole mapping: any value may be an expression
        "shape": {"type": "array", "items": dim, "description": "dims: integers or symbolic names like batch, seq"},
        "dtype": {"enum": list(DTYPES), "default": "float32"},
        "optional": {"type": "boolean", "default": False},
        "doc": {"type": "string"},
    }
    return {"type": "object", "required": ["shape"], "additionalProperties": False,
            "properties": {k: with_expressions(v) for k, v in props.items()}}


def _network_schema(nodes: dict) -> dict:
    """One network of ``networks:``: its own inputs, graph and outputs (sharing the spec's vars and blocks)."""
    return {"type": "object", "required": ["inputs", "graph", "outputs"], "additionalProperties": False,
            "properties": {
                "inputs": {"type": "object", "additionalProperties": {"$ref": "#/$defs/input"}},
                "graph": nodes,
                "outputs": {"anyOf": [{"type": "array", "items": {"$ref": "#/$defs/ref"}},
                                      {"type": "object", "additionalProperties": {"$ref": "#/$defs/ref"}}]},
                "doc": {"type": "string"}}}


def json_schema() -> dict:
    """The whole spec schema, derived from the registry."""
    ops = registry()
    defs: dict[str, Any] = {"name": _NAME, "ref": _REF, "in": _IN, "block_use": _block_use_schema(),
                            "node": _node_schema(ops), "input": _input_schema()}
    for name, definition in sorted(ops.items()):  # deterministic whatever order the op modules were imported in
        defs[f"op.{name}"] = op_node_schema(definition)
    nodes = {"type": "array", "items": {"$ref": "#/$defs/node"}}
    block = {"type": "object", "required": ["nodes", "outputs"], "additionalProperties": False, "properties": {
        "inputs": {"type": "array", "items": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*\??$"}},
        "params": {"type": "object"}, "nodes": nodes, "doc": {"type": "string"},
        "outputs": {"anyOf": [{"type": "array", "items": {"$ref": "#/$defs/ref"}},
                              {"type": "object", "additionalProperties": {"$ref": "#/$defs/ref"}}]},
    }}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "nngraph spec",
        "type": "object",
        "required": ["nngraph"],
        "additionalProperties": False,
        "properties": {
            "nngraph": {"const": 1, "description": "format version"},
            "name": {"type": "string"},
            "doc": {"type": "string"},
            "vars": {"type": "object", "description": "values usable as ${name} in expressions"},
            "imports": {"type": "array", "items": {"anyOf": [
                {"type": "string"},
                {"type": "object", "required": ["path"], "additionalProperties": False,
                 "properties": {"path": {"type": "string"}, "as": {"$ref": "#/$defs/name"}}}]}},
            "inputs": {"type": "object", "additionalProperties": {"$ref": "#/$defs/input"}},
            "dims": dims_schema(),
            "blocks": {"type": "object", "additionalProperties": block},
            "graph": nodes,
            "outputs": {"anyOf": [{"type": "array", "items": {"$ref": "#/$defs/ref"}},
                                  {"type": "object", "additionalProperties": {"$ref": "#/$defs/ref"}}]},
            "train": train_schema(),
            "expect": expect_schema(),
            "networks": {"type": "object", "description": "several named networks instead of inputs/graph/outputs",
                         "additionalProperties": _network_schema(nodes)},
        },
        "$defs": defs,
    }
