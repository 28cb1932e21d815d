"""Stage 8, metadata: the producer, the spec's name and doc, and the file's ``metadata_props`` (:mod:`..metadata`)."""

from __future__ import annotations

from typing import Any

from ..axes import _io_meta


def write_metadata(s: Any) -> None:
    """Producer, name/doc, then what was exported and how (spec, fingerprint, opset, kernels, lowerings, I/O...)."""
    from nngraph import __version__

    from ..lowering import lowering_of
    from ..metadata import set_metadata

    graph, cfg = s.graph, s.config
    s.model.producer_name, s.model.producer_version = "nngraph", __version__
    describe_model(s.model, graph)
    s.io_meta = _io_meta(graph, s.names, s.out_names, s.dynamic, s.sizes, s.kv_layers, s.batch_sym)
    if cfg.kv_cache:
        from nngraph.compilers.decoding import decoding_facts

        facts = decoding_facts(graph)
        s.kv_meta = {"token_input": s.names[0], "logits_output": s.out_names[0], "layers": s.kv_layers,
                     "batch": s.batch_sym, "layout": "[batch, kv_heads, seq, head_dim]",
                     "input_roles": {n: r for n, r in facts["input_roles"].items() if n in s.names},
                     "unpositioned": facts["unpositioned"]}
    s.lowering = lowering_of(graph)
    set_metadata(s.model, {
        "version": __version__, "spec": graph.name, "spec_file": cfg.spec_file or str(graph.file or ""),
        "fingerprint": graph.fingerprint(), "opset": str(s.opset), "opset_reason": s.opset_reason,
        "target": s.info.name,
        "attention_kernels": {n: {"kernel": c.kernel.name, "onnx_op": c.kernel.onnx_op, "reason": c.reason}
                              for n, c in s.choices.items()},
        "lowering": s.lowering, **({"fusions": s.fusions} if s.fusions else {}),
        "inputs": s.io_meta[0], "outputs": s.io_meta[1], "dynamic": s.dynamic,
        "weights": _weights_source(s), **_optional(s), **dict(cfg.extra_metadata or {}),
    })


def _weights_source(s: Any) -> str:
    if s.config.weights is not None:
        return str(s.config.weights)
    return "weights of the given torch module" if s.given_module else f"initial weights, seed {s.config.seed}"


def _optional(s: Any) -> dict[str, Any]:
    """The keys only some files have: KV cache, the learned position table's limit, precision, expected length,
    the tokenizer (:mod:`nngraph.compilers.tokenizer`)."""
    from ...tokenizer import tokenizer_metadata

    limits = [n.params.get("max_len") for n in s.graph.nodes.values()
              if n.op == "position_embedding" and n.params.get("type") == "learned" and n.params.get("max_len")]
    out: dict[str, Any] = {}
    if s.kv_meta:
        out["kv_cache"] = s.kv_meta
    if limits:
        out["max_positions"] = str(min(limits))
    if s.precision:
        out["precision"] = s.precision
    if s.config.expected_seq:
        out["expected_seq"] = str(s.config.expected_seq)
    out.update(tokenizer_metadata(s.config.weights, s.config.tokenizer))
    return out


def describe_model(model: Any, graph: Any) -> None:
    """The spec's name as the graph's name and its ``doc:`` as the model's ``doc_string`` (Netron and
    ``onnx.helper.printable_graph`` show both)."""
    model.graph.name = graph.name
    if graph.doc:
        model.doc_string = graph.doc if isinstance(graph.doc, str) else str(graph.doc)
