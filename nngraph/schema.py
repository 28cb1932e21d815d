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
    rules = [{"if": {"properties": {"op": {"const": name}}, "required": ["op"]},
              "then": {"$ref": f"#/$defs/op.{name}"}} for name in sorted(ops)]  # sorted: registry order follows import order
    return {"anyOf": [
        {"$ref": "#/$defs/block_use"},
        {"type": "object", "required": ["name", "op"],
         "properties": {"op": {"enum": sorted(ops), "description": "the primitive"}}, "allOf": rules},
    ]}


def _input_schema() -> dict:
    dim = {"anyOf": [{"type": "integer", "minimum": 0}, {"$ref": "#/$defs/name"}, EXPR_SCHEMA]}
    return {"type": "object", "required": ["shape"], "additionalProperties": False, "properties": {
        "shape": {"type": "array", "items": dim, "description": "dims: integers or symbolic names like batch, seq"},
        "dtype": {"enum": list(DTYPES), "default": "float32"},
        "optional": {"type": "boolean", "default": False},
        "doc": {"type": "string"},
    }}


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
            "blocks": {"type": "object", "additionalProperties": block},
            "graph": nodes,
            "outputs": {"anyOf": [{"type": "array", "items": {"$ref": "#/$defs/ref"}},
                                  {"type": "object", "additionalProperties": {"$ref": "#/$defs/ref"}}]},
            "train": {"type": "object", "description": "training configuration (see `nngraph train`)"},
            "networks": {"type": "object", "description": "several named networks instead of inputs/graph/outputs",
                         "additionalProperties": _network_schema(nodes)},
        },
        "$defs": defs,
    }
