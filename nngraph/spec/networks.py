"""Several named networks in one spec: generator/discriminator, actor/critic, encoder/decoder.

A spec declares them under ``networks:`` instead of a top-level ``inputs``/``graph``/``outputs``;
they share the spec's ``vars``, ``blocks`` and ``imports``::

    nngraph: 1
    name: gan_2d
    vars: {latent: 2, hidden: 128}
    blocks: {mlp: ...}
    networks:
      generator:
        inputs: {z: {shape: [batch, "${latent}"]}}
        graph: [...]
        outputs: {x: out}
      discriminator:
        inputs: {x: {shape: [batch, 2]}}
        graph: [...]
        outputs: {logit: out}
    train: {task: gan, ...}   # train.networks maps the task's roles to these names (default: same names)

Each network is checked and shape-inferred as a graph of its own (``graph.networks[name]``). The graph
:func:`build_networks` returns is their disjoint union -- nodes ``<network>.<node>``, inputs
``<network>__<input>``, outputs ``<network>__<output>`` -- so every tool that takes one graph
(inspect, compile, export, the zoo tests) works on it unchanged, and its parameter names
(``generator.fc1.weight``) are those of the per-network container the trainer uses.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable

from ..errors import Diagnostics, SourcePos, choices_hint
from ..infer import infer_graph
from ..ir import Graph, Ref
from ..limits import Limits
from ..registry import registry
from ..yamlsrc import Map, pos_in
from .expand import NAME_RE
from .overrides import NodeOverrides
from .resolve import Scope

if TYPE_CHECKING:
    from .blocks import BlockTable

NETWORK_KEYS = ("inputs", "graph", "outputs", "doc")
SEP = "__"  # <network>__<input>: union inputs are keyword arguments, so identifiers


def build_networks(data: dict, name: str, display: str, scope: Scope, blocks: BlockTable, diag: Diagnostics,
                   limits: Limits, top: SourcePos, build_graph: Callable[..., Graph | None],
                   overrides: NodeOverrides | None = None) -> Graph | None:
    """Every network of ``data['networks']`` as a graph, and their union (None when none could be built).
    A ``--set graph.PATH.PARAM`` reaches the node at PATH in each network that has one. ``build_graph`` is
    the document's one-graph builder (passed in: the document module calls this one)."""

    raw, npos = data["networks"], pos_in(data, "networks", top)
    for key in ("inputs", "graph", "outputs"):
        if key in data:
            diag.error(data.pos_of_key(key) if isinstance(data, Map) else top,
                       f"'{key}' at the top level of a spec with 'networks'",
                       f"move it into one of the networks ({', '.join(map(str, raw)) if isinstance(raw, dict) else '...'})")
    if not isinstance(raw, dict) or not raw:
        diag.error(npos, "'networks' must be a mapping of network name -> {inputs, graph, outputs}",
                   "networks: {generator: {inputs: ..., graph: [...], outputs: ...}}")
        return None
    nets: dict[str, Graph] = {}
    for net, body in raw.items():
        kpos = raw.pos_of_key(net) if isinstance(raw, Map) else npos
        if not isinstance(net, str) or not NAME_RE.match(net) or SEP in net:
            diag.error(kpos, f"invalid network name {net!r}", "network names are identifiers without '__'")
            continue
        bpos = pos_in(raw, net, npos)
        if not isinstance(body, dict):
            diag.error(bpos, f"network '{net}' must be a mapping with 'inputs', 'graph' and 'outputs'")
            continue
        bad = [k for k in body if k not in NETWORK_KEYS]
        for key in bad:
            diag.error(body.pos_of_key(key) if isinstance(body, Map) else bpos, f"unknown key '{key}' in network '{net}'",
                       choices_hint(str(key), NETWORK_KEYS, "keys of a network"))
        missing = [k for k in ("inputs", "graph", "outputs") if k not in body]
        if missing:
            diag.error(kpos, f"network '{net}' has no {' and no '.join(repr(k) for k in missing)}",
                       "a network is {inputs: ..., graph: [...], outputs: ...}")
            continue
        graph = build_graph(body, f"{name}.{net}", display, scope, blocks, diag, limits, bpos, infer=False,
                            overrides=overrides)
        if graph is not None:
            graph.doc = body.get("doc")
            nets[net] = graph
    if any(d.severity == "error" for d in diag):
        return union(name, display, nets) if nets else None
    for graph in nets.values():
        infer_graph(graph, diag, limits)
    return union(name, display, nets)


def union(name: str, file: str, nets: dict[str, Graph]) -> Graph:
    """The disjoint union of ``nets``: one graph whose nodes are ``<network>.<node>``."""
    ops = registry()
    nodes, inputs, outputs, output_pos, uses = {}, {}, {}, {}, []
    for net, g in nets.items():
        def q(ref: Ref, g: Graph = g, net: str = net) -> Ref:
            return Ref(f"{net}{SEP}{ref.node}") if ref.node in g.inputs else Ref(f"{net}.{ref.node}", ref.output)

        for gi in g.inputs.values():
            inputs[f"{net}{SEP}{gi.name}"] = replace(gi, name=f"{net}{SEP}{gi.name}")
        for node in g.nodes.values():
            params = dict(node.params)
            opdef = ops.get(node.op)
            for key, p in (opdef.params.items() if opdef else ()):
                if p.kind == "ref" and isinstance(params.get(key), str) and params[key] in g.nodes:
                    params[key] = f"{net}.{params[key]}"
            nodes[f"{net}.{node.name}"] = replace(
                node, name=f"{net}.{node.name}", params=params, scope=(net, *node.scope),
                inputs={k: q(r) if r is not None else None for k, r in node.inputs.items()},
                variadic=[q(r) for r in node.variadic],
                shares_params_with=f"{net}.{node.shares_params_with}" if node.shares_params_with else None)
        for out, ref in g.outputs.items():
            outputs[f"{net}{SEP}{out}"] = q(ref)
            if out in g.output_pos:
                output_pos[f"{net}{SEP}{out}"] = g.output_pos[out]
        uses += [replace(u, name=f"{net}.{u.name}") for u in g.block_uses]
    first = next(iter(nets.values()), None)
    return Graph(name=name, file=file, inputs=inputs, nodes=nodes, outputs=outputs, output_pos=output_pos,
                 vars=first.vars if first else {}, block_uses=uses, networks=dict(nets))


def select(graph: Graph, network: str | None) -> Graph:
    """``graph`` itself (``network`` None), or its network ``network`` (ValueError naming the choices)."""
    if network is None:
        return graph
    if not graph.networks:
        raise ValueError(f"'{graph.file}' declares no networks: leave out --network")
    if network not in graph.networks:
        raise ValueError(f"'{graph.file}' has no network '{network}'; "
                         f"its networks: {', '.join(graph.networks)}")
    return graph.networks[network]


def roles_of(task: str, values: dict[str, Any]) -> dict[str, str]:
    """Role -> network name of a checked train section."""
    from ..train_keys import TASK_ROLES

    given = dict(values.get("networks") or {})
    return {role: given.get(role, role) for role in TASK_ROLES.get(task, ())}
