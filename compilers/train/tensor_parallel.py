"""Tensor parallelism derived from the IR (``train.distributed: {tp: N, dp: M}``), applied with torch's DTensor.

:func:`tp_plan` reads the graph, not module names: each node's torch implementation says how its module splits
(``tp`` of :mod:`nngraph.compilers.torch.registry`: attention's q/k/v by output rows and ``out`` by input
columns, whole heads per rank; an FFN's up/gate by rows and down by columns), and the graph decides the plain
layers' roles:

* a linear whose output reaches exactly one other linear through featurewise ops only (activations,
  dropout) is a Megatron pair: the first split by output features (each rank computes hidden/N of them, the
  featurewise ops act on that slice), the second by input features (each rank a partial sum, all-reduced);
* a linear that is a graph output (an LM head) is split by output features and its outputs gathered
  (vocab-parallel head); an embedding by rows (vocab-parallel: a lookup outside a rank's rows gives 0 there,
  the ranks' results summed);
* every other linear and embedding stays whole on every rank, with the reason in ``TPPlan.replicated``.

For one layer pair y = W₂ f(W₁ x): with W₁ = [W₁⁽¹⁾; …; W₁⁽ᴺ⁾] (rows) and W₂ = [W₂⁽¹⁾ … W₂⁽ᴺ⁾] (columns),
y = Σ_r W₂⁽ʳ⁾ f(W₁⁽ʳ⁾ x) -- one all-reduce per pair in the forward, one in the backward.

:func:`parallelize` applies the plan with ``parallelize_module`` on the ``tp`` dimension of a (dp × tp)
``DeviceMesh``, then FSDP2 over ``dp`` (per block, as :func:`.fsdp.shard`); ranks r = dp_rank·tp + tp_rank, so
one tensor-parallel group is ``tp`` consecutive ranks and every rank of it reads the same batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from nngraph.errors import Diagnostic, SpecError
from nngraph.ir import Graph

#: IR op families that act on each feature on its own (a column split passes through them unchanged)
FEATUREWISE = ("activation", "regularization")
#: the role of a linear that is a graph output: split by output features, the outputs gathered on every rank
HEAD = "head"


@dataclass
class TPPlan:
    """Module path -> tensor-parallel role; the attention modules that count heads per rank; the linear layers
    and embeddings left whole, each with the reason."""

    styles: dict[str, str] = field(default_factory=dict)
    heads: list[str] = field(default_factory=list)
    replicated: dict[str, str] = field(default_factory=dict)


def left_whole(plan: TPPlan) -> str:
    """What the run's description adds under tensor parallelism: the layers left whole on every rank, grouped by
    reason (``; whole on every rank: h.0.attn, h.1.attn (its q, k and v rows are one fused matrix ...)``), or
    nothing when every layer splits."""
    by_reason: dict[str, list[str]] = {}
    for name, why in plan.replicated.items():
        by_reason.setdefault(why, []).append(name)
    parts = [f"{', '.join(names)} ({why})" for why, names in by_reason.items()]
    return f"; whole on every rank: {'; '.join(parts)}" if parts else ""


def tp_plan(graph: Graph, model: nn.Module, tp: int) -> TPPlan:
    """The tensor-parallel plan of ``model`` (compiled from ``graph``) over ``tp`` ranks.

    Raises a :class:`SpecError` at the node when a layer that tensor parallelism splits has sizes that do not
    divide by ``tp`` (attention heads, an FFN's hidden size)."""
    from nngraph.compilers.torch.module import node_module
    from nngraph.compilers.torch.registry import TP_HEADS, TP_LINEAR, TP_VOCAB, get_impl

    plan, linears = TPPlan(), []
    for name, node in graph.nodes.items():
        impl, module = get_impl(node.op), node_module(model, name)
        has_linear = isinstance(module, nn.Module) and any(isinstance(m, nn.Linear) for m in module.modules())
        if node.shares_params_with or impl is None or impl.tp is None:
            if has_linear:
                plan.replicated[name] = (f"it runs the modules of '{node.shares_params_with}' (share)"
                                         if node.shares_params_with
                                         else f"op {node.op} declares no tensor-parallel split")
            continue
        try:
            roles = impl.tp(module, tp)
        except ValueError as exc:
            raise SpecError([Diagnostic(node.pos, f"train.distributed.tp: node '{name}' ({node.op}) cannot be split "
                                                  f"over {tp} ranks: {exc}", "choose a tp that divides it")]) from None
        if isinstance(roles, str):
            plan.replicated[name] = roles
            continue
        for sub, role in roles.items():
            path = f"{name}.{sub}" if sub else name
            if role == TP_LINEAR:
                linears.append(name)
            elif role == TP_HEADS:
                plan.heads.append(path)
            elif role == TP_VOCAB:
                _vocab(graph, name, plan)
            else:
                plan.styles[path] = role
    _pairs(graph, model, linears, tp, plan)
    return plan


def _vocab(graph: Graph, name: str, plan: TPPlan) -> None:
    """An embedding is split by rows unless another node reads its table (``tie``): both would split it."""
    from nngraph.compilers.torch.registry import TP_VOCAB

    readers = [n for n, node in graph.nodes.items() if node.params.get("tie") == name]
    if readers:
        plan.replicated[name] = f"its table is tied to {', '.join(readers)}"
    else:
        plan.styles[name] = TP_VOCAB


def _pairs(graph: Graph, model: nn.Module, linears: list[str], tp: int, plan: TPPlan) -> None:
    """Roles of the plain linear layers from the graph (see the module doc), in graph order."""
    from nngraph.compilers.torch.registry import TP_COLWISE, TP_ROWWISE

    readers = graph.consumers()
    outputs = {r.node for r in graph.outputs.values()}
    plain = set(linears)
    for name in linears:
        if name in plan.styles:  # the second of a pair
            continue
        if name in outputs and not readers.get(name):
            out = model.get_submodule(name).out_features
            if out % tp == 0:
                plan.styles[name] = HEAD
            else:
                plan.replicated[name] = f"it is a graph output whose {out} features do not divide over tp={tp} ranks"
            continue
        partner, why = _partner(graph, name, readers, outputs, plain)
        if partner is None or partner in plan.styles:
            plan.replicated[name] = why or f"the linear it reaches, '{partner}', is already split"
            continue
        hidden = model.get_submodule(name).out_features
        if hidden % tp:
            raise SpecError([Diagnostic(graph.nodes[name].pos, f"train.distributed.tp: node '{name}' (linear) cannot "
                                        f"be split over {tp} ranks: its {hidden} outputs (read by '{partner}') do not "
                                        f"divide by {tp}", "choose a tp that divides it")])
        plan.styles[name], plan.styles[partner] = TP_COLWISE, TP_ROWWISE


def _partner(graph: Graph, name: str, readers: dict[str, list[str]], outputs: set[str],
             plain: set[str]) -> tuple[str | None, str]:
    """The linear that ``name``'s output reaches through featurewise ops only, or (None, why not)."""
    from nngraph.registry import get_op

    at = name
    while True:
        nxt = readers.get(at, [])
        what = "its output" if at == name else f"'{at}'"
        if at in outputs:
            return None, f"{what} is a graph output"
        if len(nxt) != 1:
            return None, f"{what} is read by {len(nxt)} nodes, not one linear"
        at = nxt[0]
        if at in plain:
            return at, ""
        op = graph.nodes[at].op
        if get_op(op).family not in FEATUREWISE:
            return None, f"its output reaches '{at}' ({op}), not a linear through featurewise ops"


def check_mesh(run: Any, d: Any) -> None:
    """A located error (at ``train.distributed.tp`` / ``dp``) unless dp × tp is the number of processes."""
    cfg = run.values["distributed"]
    tp, dp = cfg["tp"], cfg["dp"]
    if d.world % tp:
        raise run.error("distributed.tp", f"train.distributed.tp: {tp} does not divide the {d.world} processes",
                        "start a multiple of tp processes (--nproc-per-node)")
    if dp is not None and dp * tp != d.world:
        raise run.error("distributed.dp", f"train.distributed.dp: {dp} × tp {tp} is not the {d.world} processes",
                        "leave dp out (processes / tp) or start dp × tp processes")


def parallelize(model: nn.Module, plan: TPPlan, world: int, tp: int, device_type: str,
                mp_policy: Any = None) -> Any:
    """Split ``model`` in place by ``plan`` over the ``tp`` dimension of a (dp × tp) mesh, then shard it with
    FSDP2 over ``dp`` when dp > 1 (with ``mp_policy``, :func:`.fsdp.shard`); the process group must be up.
    Returns the mesh."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    from nngraph.compilers.torch.registry import TP_COLWISE, TP_ROWWISE, TP_VOCAB

    from .fsdp import shard

    dp = world // tp
    mesh = init_device_mesh(device_type, (dp, tp), mesh_dim_names=("dp", "tp"))
    # an embedding's rows split like a row-parallel layer's input features: partial lookups, summed
    style = {TP_COLWISE: ColwiseParallel, TP_ROWWISE: RowwiseParallel,
             TP_VOCAB: lambda: RowwiseParallel(input_layouts=Replicate()),
             HEAD: lambda: ColwiseParallel(output_layouts=Replicate())}
    parallelize_module(model, mesh["tp"], {path: style[role]() for path, role in plan.styles.items()})
    for path in plan.heads:
        model.get_submodule(path).tp_local(tp)
    if dp > 1:
        shard(model, mesh=mesh["dp"], mp_policy=mp_policy)
    return mesh


def apply(run: Any, plan: Any, d: Any, mp_policy: Any = None) -> TPPlan:
    """Tensor parallelism (and FSDP over dp, with ``mp_policy``) on the run's model (:class:`.plan.Plan`), by
    :func:`tp_plan`."""
    if run.values["lora"] is not None:
        raise run.error("distributed.tp", "train.distributed.tp: LoRA adapters cannot be split by tensor "
                        "parallelism yet", "train with tp: 1 (data parallel) or without train.lora")
    import warnings

    # FSDP2 warns once that the root returns a view (the gathered logits of a vocab-parallel head); the trainer
    # applies no in-place op to the model's outputs, so the backward hook it warns about cannot be lost
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor")
    tp_ = tp_plan(plan.graph, plan.model, d.tp)
    parallelize(plan.model, tp_, d.world, d.tp, plan.device.type, mp_policy)
    return tp_
