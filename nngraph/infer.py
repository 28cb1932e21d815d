"""Graph checks after expansion: cycles, shape/dtype inference, parameter counts, unused values.

Nodes are visited in topological order (stdlib ``graphlib``); each op's shape
rule sees the inferred types of its inputs. A failing node is reported where
it is written and its consumers are skipped, so one mistake gives one error,
not a cascade.
"""

from __future__ import annotations

import math
from dataclasses import replace
from graphlib import CycleError, TopologicalSorter

from .errors import Diagnostic, Diagnostics, SourcePos
from .ir import Graph, Node
from .limits import Limits, physical_memory
from .registry import InferCtx, OpDef, RefInfo, ShapeError, lookup
from .symdim import Facts, symbols_of
from .types import DTYPE_BYTES, TensorType, assumed_equal, dim_facts, doubt_size, format_shape


def ref_params(graph: Graph, node: Node) -> dict[str, str]:
    """The node's ``ref`` parameters (e.g. ``tie``) that name existing nodes: param -> node name."""
    opdef = lookup(node.op)
    params = opdef.params if opdef is not None else {}
    return {k: v for k, v in node.params.items()
            if k in params and params[k].kind == "ref" and isinstance(v, str) and v in graph.nodes
            and v != node.name}  # naming itself: the node owns the state (a repeat's first copy)


def topo_order(graph: Graph, diag: Diagnostics) -> list[str] | None:
    """Node names in dependency order, or None (with an error) when the graph has a cycle."""
    deps = {name: {r.node for r in node.all_refs() if r.node in graph.nodes} | set(ref_params(graph, node).values())
            for name, node in graph.nodes.items()}
    try:
        return list(TopologicalSorter(deps).static_order())
    except CycleError as err:
        cycle = err.args[1]
        first = graph.nodes[cycle[0]]
        diag.error(first.pos, f"cycle in the graph: {' -> '.join(reversed(cycle))}",
                   "a node cannot depend on its own output; break the loop (recurrent state belongs in an rnn/lstm/gru op)")
        return None


def _input_types(graph: Graph, node: Node) -> tuple[dict[str, TensorType | None], list[TensorType], bool]:
    """Input types of a node; the flag is False when an upstream node has no type (it failed)."""
    named: dict[str, TensorType | None] = {}
    ok = True
    for key, ref in node.inputs.items():
        if ref is None:
            named[key] = None
            continue
        t = graph.type_of(ref)
        ok &= t is not None
        named[key] = t
    variadic = [graph.type_of(r) for r in node.variadic]
    ok &= all(t is not None for t in variadic)
    return named, [t for t in variadic if t is not None], ok


def _normalize_outputs(node: Node, names: tuple[str, ...], result: object) -> dict[str, TensorType]:
    if isinstance(result, TensorType):
        return {names[0]: result}
    if isinstance(result, dict) and all(isinstance(v, TensorType) for v in result.values()):
        missing = [n for n in names if n not in result]
        if missing:
            raise ShapeError(f"internal: shape rule of '{node.op}' did not produce outputs {missing}")
        return {n: result[n] for n in names}
    raise ShapeError(f"internal: shape rule of '{node.op}' returned {type(result).__name__}")


def infer_node(graph: Graph, node: Node, diag: Diagnostics, limits: Limits) -> None:
    """Infer one node's output types and parameter count, recording errors at the node."""
    opdef = lookup(node.op)
    assert opdef is not None, node.op  # the expander made only known ops
    named, variadic, ok = _input_types(graph, node)
    if not ok:
        return  # an upstream node already failed and was reported
    missing = [k for k in opdef.required_inputs if named.get(k) is None]
    if missing:
        diag.error(node.pos, f"node '{node.name}': required input(s) {', '.join(missing)} not connected",
                   "pass them in 'in:' (a block's optional input may be unbound)")
        return
    refs = {k: RefInfo(graph.nodes[v].op, graph.nodes[v].params, graph.nodes[v].out)
            for k, v in ref_params(graph, node).items() if graph.nodes[v].out is not None}
    ctx = InferCtx(node=node.name, op=opdef, params=node.params, inputs=named, variadic=variadic, refs=refs)
    try:
        with assumed_equal() as assumed:
            outputs = _normalize_outputs(node, opdef.output_names(node.params), opdef.infer(ctx))
            own = 0 if opdef.count_params is None else int(opdef.count_params(ctx))
            n_params = 0 if node.shares_params_with else own
            for d in (d for t in outputs.values() for d in t.shape):
                doubt_size(d)
    except ShapeError as err:
        pos = (node.param_pos.get(err.param) or node.input_pos.get(err.param) or node.pos) if err.param else node.pos
        diag.error(pos, f"node '{node.name}' ({node.op}): {err.message}", err.hint)
        return
    except (ArithmeticError, TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
        diag.error(node.pos, f"node '{node.name}' ({node.op}): cannot infer shapes: {exc}",
                   "check the parameters against the inputs; if they are right this is an nngraph bug")
        return
    _warn_assumed(node, assumed, diag)
    _check_sizes(node, outputs, n_params, diag, limits)
    node.outputs = outputs
    node.n_params = n_params
    node.meta.update(ctx.meta)  # what the rule resolved for the back ends (attention: its ResolvedAttention)
    if node.shares_params_with:
        node.meta["own_params"] = own  # what it would hold alone: compared with its source's (_check_shared)
    _check_absent_inputs(graph, node, opdef, ctx, diag)


def _check_absent_inputs(graph: Graph, node: Node, opdef: OpDef, ctx: InferCtx, diag: Diagnostics) -> None:
    """An ``optional: true`` graph input may be absent at run time (the module gets None): a node must work
    without it. A required input of the op, or an item of its input list, is an error; an optional input is an
    error when the op's own rule fails without it (``mask: key_padding`` with the padding input absent), found
    by inferring again with None there. An op that binds its inputs to a block's (recur, act) is left to its
    block: an unbound state starts from zeros at run time, which its shape rule cannot tell."""
    if getattr(opdef, "subgraphs", None):
        return
    absent = {k: r.node for k, r in node.inputs.items() if r is not None and _optional_input(graph, r.node)}
    needed = [(k, n) for k, n in absent.items() if k in opdef.required_inputs]
    needed += [(f"{opdef.variadic}[{i}]", r.node) for i, r in enumerate(node.variadic) if _optional_input(graph, r.node)]
    hint = "declare the input without 'optional: true' (it is then always passed), or connect a value that is always there"
    if needed:
        key, name = needed[0]
        diag.error(node.input_pos.get(key, node.pos), f"node '{node.name}' ({node.op}): input '{key}' is the "
                   f"optional graph input '{name}', which may be absent, and {node.op} needs it", hint)
        return
    if not absent:
        return
    try:
        opdef.infer(replace(ctx, inputs={k: (None if k in absent else t) for k, t in ctx.inputs.items()}))
    except ShapeError as err:
        key = next(iter(absent))
        diag.error(node.input_pos.get(key, node.pos), f"node '{node.name}' ({node.op}): when the optional graph input "
                   f"'{absent[key]}' is absent: {err.message}", hint)


def _optional_input(graph: Graph, name: str) -> bool:
    gi = graph.inputs.get(name)
    return gi is not None and gi.optional


def _warn_assumed(node: Node, doubts: list[tuple], diag: Diagnostics) -> None:
    """A warning per thing the node's rule could not prove (once per source position: the copies of a repeated
    block assume the same thing): an undecidable dim pair taken as equal, or a dim taken as >= 1."""
    for doubt in doubts:
        if doubt[0] == "equal":
            what = f"cannot tell whether dims {doubt[1]} and {doubt[2]} are equal (assumed equal)"
            hint = f"e.g. dims: {{{_relation(doubt[1], doubt[2])}}}"
        else:
            names = sorted(symbols_of(doubt[1]))
            what = f"dim {doubt[1]} is < 1 for small {', '.join(names)} (assumed >= 1)"
            hint = f"e.g. dims: {{{names[0]}: {{min: N}}}} with the smallest size the spec supports"
        message = f"node '{node.name}' ({node.op}): {what}"
        if not any(d.pos == node.pos and d.message == message for d in diag.items):
            diag.items.append(_warning(node.pos, message, "declare what the spec assumes under 'dims:', "
                                       f"{hint}; validate --strict refuses this"))


def _relation(a: object, b: object) -> str:
    """A ``dims:`` entry that would decide ``a == b`` (a plain symbol on one side is made the other)."""
    if isinstance(b, str) and b.isidentifier():
        return f"{b}: {a}"
    if isinstance(a, str) and a.isidentifier():
        return f"{a}: {b}"
    return "SYMBOL: {multiple_of: N}"


def _check_sizes(node: Node, outputs: dict[str, TensorType], n_params: int, diag: Diagnostics, limits: Limits) -> None:
    for out_name, t in outputs.items():
        for d in t.shape:
            if isinstance(d, int) and (d < 1 or d > limits.max_dim):  # 0: an empty tensor, never what a model means
                diag.error(node.pos, f"node '{node.name}': output '{out_name}' has dim {d} (allowed 1..{limits.max_dim})",
                           "check sizes, strides and paddings")
                return
    if n_params > limits.max_params:
        diag.error(node.pos, f"node '{node.name}' would have {n_params:,} parameters, more than the limit of {limits.max_params:,}",
                   "refused before allocating anything; check the sizes, or raise the limit with --max-params")


def infer_graph(graph: Graph, diag: Diagnostics, limits: Limits) -> None:
    """Infer every node, then check the parameter total and report unused values."""
    order = topo_order(graph, diag)
    if order is None:
        return
    with dim_facts(graph.dim_facts or Facts()):
        for name in order:
            diag.context = graph.nodes[name].meta.get("uses", ())  # errors at a node in a block name the use chain
            infer_node(graph, graph.nodes[name], diag, limits)
        diag.context = ()
    total = graph.total_params
    if total > limits.max_params and not any(n.n_params and n.n_params > limits.max_params for n in graph.nodes.values()):
        diag.error(SourcePos(graph.file, 1, 1), f"the model would have {total:,} parameters, more than the limit of {limits.max_params:,}",
                   "refused before allocating anything; check the sizes or raise --max-params")
    _check_shared(graph, diag)
    _check_memory(graph, diag, limits)
    _warn_unused(graph, diag)


def _check_shared(graph: Graph, diag: Diagnostics) -> None:
    """A node that reuses another's weights (``share: NAME``) needs weights of the same sizes: the same count
    is the check the front end can make without tensors (a linear on 8 features against one on 4 differs)."""
    for node in graph.nodes.values():
        source = graph.nodes.get(node.shares_params_with or "")
        if source is None or "share_pos" not in node.meta or source.n_params is None or "own_params" not in node.meta:
            continue
        if node.meta["own_params"] != source.n_params:
            diag.error(node.meta["share_pos"], f"node '{node.name}' ({node.op}) cannot share the weights of "
                       f"'{source.name}': it needs {node.meta['own_params']:,} parameters, '{source.name}' has "
                       f"{source.n_params:,} (inputs {_input_shapes(graph, node)} against {_input_shapes(graph, source)})",
                       "shared uses need inputs and block parameters that give the same weight sizes")


def _input_shapes(graph: Graph, node: Node) -> str:
    return ", ".join(format_shape(t.shape) for t in map(graph.type_of, node.all_refs()) if t is not None)


def _gb(n_bytes: int) -> str:
    return f"{n_bytes / 1e9:,.1f} GB"


def _check_memory(graph: Graph, diag: Diagnostics, limits: Limits) -> None:
    """Refuse weights (as float32) or one input (at its written sizes; a symbolic dim counts 1) that cannot fit
    in the machine's physical memory: building them would swap or be killed, not fail cleanly."""
    if limits.max_memory <= 0:
        return
    where = (f"this machine's {_gb(limits.max_memory)} of memory (override with --max-memory GB)"
             if limits.max_memory == physical_memory() else f"the limit of {_gb(limits.max_memory)} (--max-memory)")
    report = diag.error if limits.memory_refuses else (lambda pos, msg, hint: diag.items.append(_warning(pos, msg, hint)))
    weights = 4 * graph.total_params
    if limits.max_memory < weights and graph.total_params <= limits.max_params:  # else the cap said it already
        biggest = max(graph.nodes.values(), key=lambda n: n.n_params or 0)
        report(biggest.pos if 4 * (biggest.n_params or 0) > limits.max_memory else SourcePos(graph.file, 1, 1),
               f"the model's {graph.total_params:,} parameters need {_gb(weights)} as float32, more than {where}",
               _memory_hint(limits, "refused before allocating anything; check the sizes"))
    for gi in graph.inputs.values():
        need = DTYPE_BYTES.get(gi.type.dtype, 8) * math.prod(d for d in gi.type.shape if isinstance(d, int))
        if need > limits.max_memory:
            report(gi.pos, f"input '{gi.name}' {format_shape(gi.type.shape)} needs {_gb(need)} even with every "
                   f"symbolic dim 1, more than {where}", _memory_hint(limits, "check the sizes"))


def _memory_hint(limits: Limits, refused: str) -> str:
    """What a memory-bound finding means: a refusal for a command that builds the model, a warning for one that
    only describes it (the spec is valid; building it here is what cannot work)."""
    if limits.memory_refuses:
        return refused
    return "the spec is valid as a description; compile, train, export and sample refuse it on this machine"


def _warn_unused(graph: Graph, diag: Diagnostics) -> None:
    used = set(graph.consumers()) | {r.node for r in graph.outputs.values()}
    for node in graph.nodes.values():
        used |= set(ref_params(graph, node).values())
    for name, node in graph.nodes.items():
        if name not in used:
            diag.items.append(_warning(node.pos, f"node '{name}' is never used", "remove it, or list it under outputs"))
    for name, gi in graph.inputs.items():
        if name not in used:
            diag.items.append(_warning(gi.pos, f"graph input '{name}' is never used", "remove it, or connect it"))


def _warning(pos: SourcePos, message: str, hint: str) -> Diagnostic:
    return Diagnostic(pos, message, hint, severity="warning")
