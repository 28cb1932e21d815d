"""Encoder-decoder specs for incremental decoding: an encoder file run once, a decoder-step file with a KV cache.

:func:`split` cuts a validated graph at its *memory*: the one value every cross-attention node reads
as ``context`` (T5's ``encoder_norm``). The **encoder** graph is what computes the memory from the
source inputs (output ``memory``); the **decoder** graph is the rest, with the memory as a graph input
of the same name (so every reference to it stays as it is), the target tokens first. Nodes keep
their names, so both torch models take their weights from the full model's state dict.

:func:`export_seq2seq` writes ``OUT`` (the decoder step, exported with ``kv_cache``: a
``past.{i}.key/value`` input and ``present.{i}.key/value`` output per *self*-attention layer;
cross-attention recomputes its keys/values from the memory input every step) and
``OUT.encoder.onnx`` beside it, and records in the decoder's metadata ``nngraph.seq2seq``:
``{encoder: file name, memory: input name, source_inputs: [...], shared_inputs: [...]}``, which
:func:`nngraph.compilers.onnx.generate.generate` reads to run the encoder once and feed the memory (and
the source inputs the decoder also reads, e.g. ``src_lengths``) at every step. Each file is
verified against its torch part like any export.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .kernels import ATTENTION_OPS

ENCODER_SUFFIX = ".encoder.onnx"


@dataclass
class Split:
    encoder: Any           # nngraph Graph: source inputs -> {"memory": memory}
    decoder: Any           # nngraph Graph: target tokens, memory, shared source inputs -> outputs
    memory: str            # the memory value's name (a node of the full graph, an input of the decoder)
    source_inputs: list[str]
    shared_inputs: list[str]


def memory_of(graph: Any) -> str | None:
    """The value every cross-attention node reads as context (None: no cross-attention); ValueError if several."""
    refs = {n.inputs["context"] for n in graph.nodes.values()
            if n.op in ATTENTION_OPS and n.inputs.get("context") is not None}
    if not refs:
        return None
    if len({r.node for r in refs}) != 1 or any(r.output is not None for r in refs):
        raise ValueError(f"cross-attention reads several memories ({', '.join(sorted(map(str, refs)))}); "
                         "an incremental decoder needs one encoder output")
    return next(iter(refs)).node


def _ancestors(graph: Any, name: str) -> set[str]:
    seen, todo = set(), [name]
    while todo:
        cur = todo.pop()
        if cur in seen or cur in graph.inputs:
            continue
        seen.add(cur)
        todo += [r.node for r in graph.nodes[cur].all_refs()]
    return seen


def _subgraph(graph: Any, name: str, keep: list[str], inputs: dict[str, Any], outputs: dict[str, Any]) -> Any:
    g = copy.copy(graph)
    g.name = name
    g.nodes = {k: copy.deepcopy(graph.nodes[k]) for k in graph.nodes if k in keep}
    g.inputs = inputs
    g.outputs = outputs
    g.output_pos = {}
    g.block_uses = [u for u in graph.block_uses if any(n.startswith(u.name + ".") or n == u.name for n in g.nodes)]
    g.networks = {}
    g.untied = _untie(g)
    for node in g.nodes.values():
        if node.shares_params_with and node.shares_params_with not in g.nodes:
            raise ValueError(f"node '{node.name}' shares parameters with '{node.shares_params_with}' across the split")
    return g


def _untie(g: Any) -> dict[str, str]:
    """Ties to a node on the other side of the memory (T5/BART's ``shared`` table read by both embeddings and
    the LM head): the first node tied to it owns an untied copy, the others tie to that node. Returns
    {owner: the node whose weights it copies} for :func:`part_module`."""
    owners: dict[str, str] = {}   # the absent tie target -> the node that now owns a copy
    for node in g.nodes.values():
        tie = node.params.get("tie") if isinstance(node.params, dict) else None
        if isinstance(tie, str) and tie not in g.nodes:
            if tie in owners:
                node.params["tie"] = owners[tie]
            else:
                owners[tie] = node.name
                node.params.pop("tie")
    return {owner: target for target, owner in owners.items()}


def split(graph: Any) -> Split:
    """Cut ``graph`` at its memory (see the module doc); ValueError when it is not an encoder-decoder."""
    from nngraph.ir import GraphInput, Ref

    memory = memory_of(graph)
    if memory is None:
        raise ValueError(f"'{graph.name}' has no cross-attention: not an encoder-decoder")
    if memory in graph.inputs:
        raise ValueError(f"the cross-attention memory '{memory}' is already a graph input: export the spec as is")
    enc_nodes = _ancestors(graph, memory)
    dec_nodes = set()
    for ref in graph.outputs.values():
        dec_nodes |= _ancestors_until(graph, ref.node, memory)
    if dec_nodes & enc_nodes:
        raise ValueError(f"nodes {', '.join(sorted(dec_nodes & enc_nodes)[:3])} are used on both sides of the memory "
                         f"'{memory}'")
    enc_reads = {r.node for n in enc_nodes for r in graph.nodes[n].all_refs() if r.node in graph.inputs}
    dec_reads = {r.node for n in dec_nodes for r in graph.nodes[n].all_refs() if r.node in graph.inputs}
    source = [k for k in graph.inputs if k in enc_reads]
    target = [k for k in graph.inputs if k in dec_reads and k not in enc_reads]
    shared = [k for k in graph.inputs if k in dec_reads and k in enc_reads]
    if not target:
        raise ValueError("the decoder reads no input of its own (target tokens)")
    mem_node = graph.nodes[memory]
    mem_in = GraphInput(memory, mem_node.out, mem_node.pos)
    order = list(graph.nodes)
    encoder = _subgraph(graph, f"{graph.name}.encoder", [n for n in order if n in enc_nodes],
                        {k: graph.inputs[k] for k in source}, {"memory": Ref(memory)})
    dec_inputs = {k: graph.inputs[k] for k in target}
    dec_inputs[memory] = mem_in
    dec_inputs.update({k: graph.inputs[k] for k in shared})
    decoder = _subgraph(graph, f"{graph.name}.decoder", [n for n in order if n in dec_nodes], dec_inputs,
                        dict(graph.outputs))
    return Split(encoder, decoder, memory, source, shared)


def _ancestors_until(graph: Any, name: str, stop: str) -> set[str]:
    seen, todo = set(), [name]
    while todo:
        cur = todo.pop()
        if cur in seen or cur in graph.inputs or cur == stop:
            continue
        seen.add(cur)
        todo += [r.node for r in graph.nodes[cur].all_refs()]
    return seen


def part_module(full: Any, part: Any) -> Any:
    """The torch model of ``part`` (a graph from :func:`split`) with the full model's weights."""
    from nngraph.compilers.torch import build_module

    module = build_module(part, seed=0)
    state = dict(full.state_dict())
    for owner, target in getattr(part, "untied", {}).items():  # an untied copy takes the tied table's weights
        state.update({f"{owner}.{k[len(target) + 1:]}": v for k, v in full.state_dict().items()
                      if k.startswith(target + ".")})
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise ValueError(f"the {part.name} part has parameters the full model lacks: {', '.join(missing[:3])}")
    module.load_state_dict({k: state[k] for k in own})
    return module.eval()


def encoder_path(decoder_path: str | Path) -> Path:
    p = Path(decoder_path)
    return p.with_name(p.name[:-5] + ENCODER_SUFFIX if p.name.endswith(".onnx") else p.name + ENCODER_SUFFIX)


def export_seq2seq(graph: Any, output: str | Path, config: Any, *, module: Any = None) -> tuple[Any, Any]:
    """Export ``graph``'s encoder to ``OUT.encoder.onnx`` and its decoder step (KV cache) to ``output`` with the
    options of ``config`` (an :class:`nngraph.compilers.onnx.config.ExportConfig`; its ``weights`` are loaded
    here, its ``extra_metadata`` is not written); returns both
    :class:`nngraph.compilers.onnx.results.ExportResult` (encoder, decoder)."""
    from dataclasses import replace

    from nngraph.compilers.torch import build_module

    from .pipeline import run
    from .results import ExportError

    try:
        parts = split(graph)
    except ValueError as exc:
        raise ExportError(f"--kv-cache: {exc}") from None
    if module is None:
        module = build_module(graph, seed=config.seed)
    if config.weights is not None:
        from .weights import load_into

        load_into(module, graph, config.weights)
    module.eval()
    try:
        enc_mod, dec_mod = part_module(module, parts.encoder), part_module(module, parts.decoder)
    except ValueError as exc:
        raise ExportError(f"--kv-cache: {exc}") from None
    enc_out = encoder_path(output)
    part = replace(config, weights=None, extra_metadata=None)
    enc = run(parts.encoder, enc_out, replace(part, kv_cache=False), enc_mod)
    info = {"encoder": enc_out.name, "memory": parts.memory, "source_inputs": parts.source_inputs,
            "shared_inputs": parts.shared_inputs}
    dec = run(parts.decoder, output, replace(part, kv_cache=True, extra_metadata={"seq2seq": info}), dec_mod)
    dec.kv_cache = {**(dec.kv_cache or {}), "seq2seq": info}
    return enc, dec
