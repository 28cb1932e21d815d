"""Stage 1, options: the config checked against the graph before anything is built."""

from __future__ import annotations

from typing import Any

from ..axes import length_bound_symbols
from ..kernels import TARGETS, target_info
from ..opsets import MAX_OPSET, MIN_OPSET
from ..results import ExportError


def check_options(s: Any) -> None:
    """dtype, tolerance, opset range, target, the dims that stay dynamic."""
    from ..precision import DTYPES, FP16_TOLERANCE

    cfg = s.config
    if cfg.dtype not in DTYPES:
        raise ExportError(f"--dtype {cfg.dtype} is not supported: use {' or '.join(DTYPES)}")
    s.tolerance = cfg.tolerance if cfg.tolerance is not None else FP16_TOLERANCE if cfg.dtype == "float16" else 1e-4
    if cfg.opset is not None and not MIN_OPSET <= int(cfg.opset) <= MAX_OPSET:
        raise ExportError(f"opset {cfg.opset} is not supported: use {MIN_OPSET}..{MAX_OPSET} (default: the lowest "
                          "the model needs)")
    s.info = _target(cfg.target)
    s.dynamic, s.frozen = dynamic_dims(s.graph, cfg.dynamic, cfg.dims, cfg.include_optional)


def _target(target: Any) -> Any:
    if isinstance(target, str) and target not in TARGETS:
        raise ExportError(f"unknown target '{target}': use {', '.join(TARGETS[:-1])} or {TARGETS[-1]}")
    return target_info(target)


def dynamic_dims(graph: Any, dynamic: Any, dims: Any, include_optional: bool) -> tuple[list[str], dict[str, str]]:
    """(the symbolic input dims that stay dynamic, the dims the model fixes -> why); ExportError when a dim
    asked dynamic is unknown or fixed, or a fixed one has no size."""
    from ..inputs import symbols

    all_syms = symbols(graph, include_optional)
    frozen = length_bound_symbols(graph)
    dyn = [s for s in all_syms if s not in frozen] if dynamic is None else list(dynamic)
    unknown = [d for d in dyn if d not in all_syms]
    if unknown:
        raise ExportError(f"--dynamic names {', '.join(repr(u) for u in unknown)}, which is not a symbolic dim of the "
                          f"inputs (they have: {', '.join(all_syms) or 'none'})")
    for d in dyn:
        if d in frozen:
            raise ExportError(f"dim '{d}' cannot be dynamic: {frozen[d]}; export at a fixed size with --dim {d}=N")
    for d in all_syms:
        if d not in dyn and d not in frozen and d not in (dims or {}):
            raise ExportError(f"dim '{d}' is not in --dynamic, so the file fixes its size: give it with --dim {d}=N")
    return dyn, frozen


def check_kv(graph: Any, attn_nodes: list[Any]) -> None:
    """ExportError unless ``graph`` can get a KV cache: self-attention on token ids, no other state."""
    from ..lowering import stateful_ops

    if not attn_nodes:
        raise ExportError(f"--kv-cache: '{graph.name}' has no attention node to cache")
    for node in attn_nodes:
        ctx = node.inputs.get("context")
        if ctx is not None and ctx.node not in graph.inputs:
            raise ExportError(f"--kv-cache: node '{node.name}' is cross-attention on '{ctx}', which the graph "
                              "computes: export an encoder-decoder with nngraph.compilers.onnx.seq2seq (nngraph export "
                              "--kv-cache does so), which makes that memory a decoder input")
    if all(n.inputs.get("context") is not None for n in attn_nodes):
        raise ExportError(f"--kv-cache: '{graph.name}' has no self-attention node to cache")
    bad = [n.name for n in graph.nodes.values() if n.op in stateful_ops()]
    if bad:
        raise ExportError(f"--kv-cache: node '{bad[0]}' has state that is not a key/value cache")
    first = next(iter(graph.inputs.values()))
    if first.type.dtype not in ("int64", "int32") or len(first.type.shape) != 2:
        raise ExportError(f"--kv-cache: the first input '{first.name}' must be token ids [batch, seq]")
