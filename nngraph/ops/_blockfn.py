"""Blocks used as functions: op parameters that name a block (message functions, experts, GIN's nn).

An op declares such parameters with :func:`block_param` and :func:`declare_functions`;
the expander (:func:`nngraph.spec.functions.build_subgraphs`) then expands the named
block once as a closed sub-graph stored in ``node.meta["subgraphs"][param]`` (and
reachable from the shape rule as ``ctx.params[param].graph``). The shape rule gives
the sub-graph's inputs their types with :func:`infer_function`, which runs the
ordinary per-node inference over it and reports the first problem at the parameter.

A parameter value is a block name (``message: edge_mlp``) or a mapping with
block parameters (``message: {block: edge_mlp, with: {hidden: 64}}``).
"""

from __future__ import annotations

from typing import Any

from ..registry import InferCtx, OpDef, Param
from ..types import TensorType

_NAME = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
BLOCK_SCHEMA = {"anyOf": [
    {"type": "string", "pattern": _NAME},
    {"type": "object", "properties": {"block": {"type": "string", "pattern": _NAME}, "with": {"type": "object"}},
     "required": ["block"], "additionalProperties": False},
]}


def _is_block_name(value: Any) -> bool:
    return isinstance(value, str) and all(part.isidentifier() for part in value.split("."))


def _check_block(value: Any) -> list[tuple[str, str]]:
    if _is_block_name(value):
        return []
    if isinstance(value, dict):
        extra = [k for k in value if k not in ("block", "with")]
        if extra:
            return [(str(extra[0]), f"unknown key {extra[0]!r}; expected 'block' and optionally 'with'")]
        if not _is_block_name(value.get("block")):
            return [("block", f"expected the name of a block, got {value.get('block')!r}")]
        if value.get("with") is not None and not isinstance(value.get("with"), dict):
            return [("with", f"expected a mapping of block parameters, got {value.get('with')!r}")]
        return []
    return [("", f"expected a block name or {{block: NAME, with: {{...}}}}, got {value!r}")]


def block_param(doc: str, default: Any = None) -> Param:
    """A parameter naming a block defined in the spec (or imported), used as a function."""
    return Param("custom", doc, default, schema=BLOCK_SCHEMA, check=_check_block)


def declare_functions(opdef: OpDef, **allowed: tuple[str, ...] | None) -> OpDef:
    """Mark params of ``opdef`` as blocks-as-functions: param -> allowed block input names (None: any)."""
    opdef.subgraphs = dict(allowed)  # type: ignore[attr-defined]
    return opdef


def function_graph(ctx: InferCtx, param: str) -> Any:
    """The expanded sub-graph of a block-valued parameter, or None when the parameter is not given."""
    value = ctx.params.get(param)
    if value is None:
        return None
    graph = getattr(value, "graph", None)
    if graph is None:
        ctx.fail(f"block {value!r} given as '{param}' was not expanded", "this op must be used inside a spec", param)
    return graph


def infer_function(ctx: InferCtx, param: str, types: dict[str, TensorType], role: str) -> dict[str, TensorType]:
    """Infer the sub-graph of ``param`` with the given input types; returns its output types.

    Inputs the block declares but ``types`` lacks are unavailable: reading them is an error.
    Problems inside the block are reported at the parameter, quoting where in the block they are.
    """
    from ..errors import Diagnostics
    from ..infer import infer_node, topo_order
    from ..limits import DEFAULT_LIMITS

    graph = function_graph(ctx, param)
    block = str(ctx.params[param])
    readers = {r.node: n.name for n in graph.nodes.values() for r in n.all_refs()}
    for name, gi in graph.inputs.items():
        if name in types:
            gi.type = types[name]
            continue
        if name in readers or any(ref.node == name for ref in graph.outputs.values()):
            ctx.fail(f"block '{block}' ({role}) reads '{name}', which this node does not provide",
                     f"connect the input that feeds '{name}', or remove '{name}' from the block", param)
        gi.type = TensorType((), "float32")
    diag = Diagnostics()
    order = topo_order(graph, diag) or []
    for name in order:
        node = graph.nodes[name]
        node.outputs, node.n_params = {}, None
        infer_node(graph, node, diag, DEFAULT_LIMITS)
    errors = [d for d in diag if d.severity == "error"]
    if errors:
        first = errors[0]
        ctx.fail(f"in block '{block}' ({role}) at {first.pos}: {first.message}", first.hint, param)
    out = {}
    for name, ref in graph.outputs.items():
        t = graph.type_of(ref)
        if t is None:
            ctx.fail(f"block '{block}' ({role}): output '{name}' has no type", None, param)
        out[name] = t
    return out


def function_params(ctx: InferCtx, param: str) -> int:
    """Learnable parameters of the sub-graph of ``param`` (0 when not given); call after inference."""
    graph = function_graph(ctx, param)
    return 0 if graph is None else graph.total_params
