"""Stage 3, build: the torch model in eval mode, the inputs and outputs, the KV-cache layers, the traced wrapper."""

from __future__ import annotations

from typing import Any

from ..kernels import ATTENTION_OPS, KVIO


def build_model(s: Any) -> None:
    """The model (given, or built with ``seed``), ``weights`` loaded; input/output names; KV layers; the wrapper."""
    from ..inputs import trace_sizes
    from ..wrapper import ExportWrapper

    cfg, graph = s.config, s.graph
    if s.module is None:
        from nngraph.compilers.torch import build_module

        s.module = build_module(graph, seed=cfg.seed)
    if cfg.weights is not None:
        from ..weights import load_into

        s.notes += load_into(s.module, graph, cfg.weights)
    s.module.eval()
    s.names = [n for n, gi in graph.inputs.items() if cfg.include_optional or not gi.optional]
    s.out_names = list(graph.outputs)
    s.sizes = trace_sizes(graph, cfg.dims)
    s.io = KVIO() if cfg.kv_cache else None
    s.kv_layers = kv_layers(graph, s.choices) if cfg.kv_cache else []
    s.wrapper = ExportWrapper(s.module, s.names, s.out_names, s.io, s.kv_layers, graph).eval()


def kv_layers(graph: Any, choices: dict[str, Any]) -> list[dict[str, Any]]:
    """One past/present pair per self-attention layer (cross-attention reads its memory, a graph input, each step)."""
    attn = [n for n in graph.nodes.values() if n.op in ATTENTION_OPS and n.inputs.get("context") is None]
    out = []
    for i, node in enumerate(attn):
        site = choices[node.name].site
        out.append({"node": node.name, "past_key": f"past.{i}.key", "past_value": f"past.{i}.value",
                    "present_key": f"present.{i}.key", "present_value": f"present.{i}.value",
                    "kv_heads": site.kv_heads, "head_dim": site.head_dim})
    return out
