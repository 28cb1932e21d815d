"""Stage 2, plan: an attention kernel per node for the target, then the export's opset (no torch needed)."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from ..kernels import ATTENTION_OPS, Choice, ExportOptions, choose_all, target_info
from ..opsets import MAX_OPSET, MIN_OPSET, Need, choose_opset, explain
from ..results import ExportError
from .options import check_kv


def plan_export(s: Any) -> None:
    """The kernel choices and the opset (and why) of export ``s``; a KV cache's preconditions."""
    cfg = s.config
    s.choices = plan(s.graph, s.info, cfg.opset, cfg.kv_cache, cfg.kernels, cfg.expected_seq)
    s.opset, s.opset_reason = opset_for(s.graph, s.choices, s.info, cfg.fuse, cfg.opset)
    if cfg.kv_cache:
        check_kv(s.graph, [n for n in s.graph.nodes.values() if n.op in ATTENTION_OPS])


def plan(graph: Any, target: Any = "ort-cpu", opset: int | None = None, kv_cache: bool = False,
         kernels: Mapping[str, str] | None = None, expected_seq: int | None = None) -> dict[str, Choice]:
    """The attention kernel choices an export would make (no torch needed); ``opset`` None: the export picks the
    opset, so every kernel up to :data:`MAX_OPSET` may apply."""
    options = ExportOptions(opset=opset or MAX_OPSET, kv_cache=kv_cache, expected_seq=expected_seq)
    try:
        return choose_all(graph, target, options, dict(kernels or {}))
    except ValueError as exc:
        raise ExportError(str(exc)) from None


def opset_for(graph: Any, choices: Mapping[str, Choice], target: Any, fuse: Any, opset: int | None) -> tuple[int, str]:
    """(opset, why) of an export of ``graph`` with kernel ``choices``, target and fusions as asked: ``opset`` if
    given (checked against what the model needs), else the lowest the chosen kernels, lowerings and fusions need
    (:mod:`nngraph.compilers.onnx.opsets`)."""
    from ..fusions import requested

    try:
        found = needs(graph, choices, requested(target_info(target), fuse))
        chosen = choose_opset(opset, found)
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    return chosen, explain(chosen, opset, found)


def needs(graph: Any, choices: Mapping[str, Any], fusion_names: Iterable[str] = ()) -> list[Need]:
    """The declared requirements above the floor of an export of ``graph`` with kernel ``choices`` and the fusions
    named: the kernels' ``min_opset``, the lowerings' ``needs`` (:mod:`nngraph.compilers.onnx.lowering`), the
    fusions' ``min_opset``."""
    from ..fusions import fusions
    from ..lowering import min_opset as lowering_need

    out = [Need(c.kernel.min_opset, f"node '{name}' ({c.kernel.name} kernel)", c.kernel.onnx_op)
           for name, c in choices.items() if c.kernel.min_opset]
    for node in graph.nodes.values():
        need = lowering_need(node)
        if need is not None:
            out.append(Need(need[0], f"node '{node.name}' ({node.op})", need[1]))
    wanted = set(fusion_names)
    for f in fusions():
        need = f.min_opset(graph) if f.name in wanted and f.min_opset is not None else None
        if need is not None:
            out.append(Need(need[0], f"fusion {f.name}", need[1], hard=False))
    return [n for n in out if n.opset > MIN_OPSET]
