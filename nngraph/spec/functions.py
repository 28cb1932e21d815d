"""Blocks used as functions: op parameters that name a block, expanded once into a closed sub-graph.

Ops declare such parameters (``message_passing``'s ``message``, MoE experts, ``recur``'s ``cell``; see
:mod:`nngraph.ops._blockfn`); :func:`build_subgraphs` expands the named block with its own
:class:`~nngraph.spec.expand.Expander` and stores the result in ``node.meta["subgraphs"]`` and on the
parameter's value (:class:`BlockFunction`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import choices_hint
from ..ir import Node, Ref
from ..registry import OpDef
from .references import RefError, TextRef, resolve_all

if TYPE_CHECKING:
    from .expand import Expander


class BlockFunction(str):
    """The value of an op parameter that names a block used as a function.

    Ops declare such parameters with ``opdef.subgraphs = {param: allowed input
    names or None}`` (e.g. ``message_passing``'s ``message`` and ``update``). The
    value compares equal to the block name (so params stay plain strings for
    every consumer); ``graph`` is the block expanded once as its own closed
    :class:`~nngraph.ir.Graph` whose inputs are the block's inputs, with types
    filled in by the op's shape rule. The same graph is stored in
    ``node.meta["subgraphs"][param]`` for the back ends.
    """

    graph: Any = None


def build_subgraphs(exp: Expander, node: Node, opdef: OpDef) -> None:
    """Expand every block-valued parameter of ``node`` into a sub-graph (errors at the parameter)."""
    from dataclasses import replace

    from ..ir import Graph, GraphInput
    from ..types import TensorType

    for key, allowed in opdef.subgraphs.items():  # type: ignore[attr-defined]
        value = node.params.get(key)
        param = opdef.params[key]
        if value is None or key not in node.param_pos or (param.check and param.check(value)):
            continue  # not given, or already reported as malformed
        vpos = node.param_pos[key]
        block_name, with_raw = (value.get("block"), value.get("with")) if isinstance(value, dict) else (value, None)
        table = exp._tables[-1]
        bdef = table.get(block_name) if isinstance(block_name, str) else None
        where = f"parameter '{key}' of node '{node.name}' ({opdef.name})"
        if bdef is None:
            exp.diag.error(vpos, f"{where}: unknown block {block_name!r}",
                           choices_hint(str(block_name), table.keys(), "defined blocks"))
            continue
        if any(b is bdef for b in exp._stack):
            chain = " -> ".join([b.name for b in exp._stack] + [bdef.name])
            exp.diag.error(vpos, f"{where}: recursive block: {chain}", "a block cannot use itself, directly or through another block")
            continue
        bad = [i for i in bdef.inputs if allowed is not None and i not in allowed]
        if bad or not bdef.inputs:
            got = ", ".join(bdef.inputs) or "none"
            exp.diag.error(vpos, f"{where}: block '{bdef.name}' must take inputs from ({', '.join(allowed or ('x',))}), got ({got})",
                           f"rename the inputs of block '{bdef.name}' (declared at {bdef.pos})")
            continue
        used = len(exp.nodes) + exp.__dict__.get("_function_nodes", 0)
        sub = type(exp)(table, exp.diag,  # a fresh expander of the caller's kind (this module is below expand)
                        replace(exp.limits, max_nodes=max(1, exp.limits.max_nodes - used)), set(bdef.inputs),
                        exp.overrides.within(f"{node.name}.{key}."))  # --set graph.rnn.cell.fc.out reaches it
        sub._stack = exp._stack + [bdef]
        sub._tables = [bdef.library or table]
        with_args = exp._with_args({"with": with_raw}, bdef, bdef.scope, vpos) if with_raw else {}
        inner = bdef.scope.child({**bdef.params, **with_args, "index": 0})
        before = len(exp.diag.items)
        sub.expand_list(bdef.nodes, "", inner, (), bdef.name, bdef.pos)
        resolve_all(sub)
        exp._function_nodes = exp.__dict__.get("_function_nodes", 0) + len(sub.nodes)  # type: ignore[attr-defined]
        outputs: dict[str, Ref] = {}
        for out_name, local in bdef.outputs.items():
            opos = bdef.output_pos.get(out_name, bdef.pos)
            try:
                ref = sub.resolve_target(TextRef("", local, opos))
            except RefError as err:
                exp.diag.error(opos, f"output '{out_name}' of block '{bdef.name}': {err.message}", err.hint)
                continue
            if ref is None:
                exp.diag.error(opos, f"output '{out_name}' of block '{bdef.name}' refers to an unbound optional input")
                continue
            outputs[out_name] = ref
        if len(exp.diag.items) > before or not outputs:
            continue
        inputs = {i: GraphInput(i, TensorType(()), bdef.pos, i in bdef.optional) for i in bdef.inputs}
        graph = Graph(name=f"{node.name}.{key}", file=vpos.file, inputs=inputs, nodes=sub.nodes, outputs=outputs,
                      block_uses=sub.block_uses, doc=bdef.name)
        node.meta.setdefault("subgraphs", {})[key] = graph
        fn = BlockFunction(bdef.name)
        fn.graph = graph
        node.params[key] = fn
