"""Every ONNX attention kernel's rule against what ONNX Runtime really does: no verdict "applies" where ORT fails.

For each head_dim of :data:`HEAD_DIMS` one tiny spec holds one attention node per mask kind of
:data:`KINDS` (all reading the same ``x``). Per kernel, the nodes its rule accepts are exported with
that kernel forced (the others decomposed) and the file is run in an ORT session: it must run and
equal the torch module (max |diff| <= 1e-4). Where a rule refuses for ORT's own limits (a head size
ORT's op rejects), the kernel is forced past its rule and ORT must fail with the message the rule
paraphrases -- so the rule is neither looser nor (there) stricter than ORT.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from nngraph import load_spec
from nngraph.compilers.onnx.export import export_graph
from nngraph.compilers.onnx.inputs import sample_inputs
from nngraph.compilers.onnx.kernels import attention_candidates, choose_all, kernel_named
from nngraph.compilers.onnx.runner import make_session
from nngraph.compilers.torch import build_module

from onnx_support import randomize, torch_outputs

HEAD_DIMS = (8, 12, 16, 18, 24, 64, 80, 96, 128)
#: mask kind -> attention params (and the extra input it reads)
KINDS = {
    "none": "",
    "causal": "mask: causal",
    "lengths": "mask: key_padding",
    "key_padding": "mask: key_padding",
    "causal_lengths": "mask: {all: [causal, key_padding]}",
    "window": "mask: {type: sliding_window, window: 3}",
    "alibi": "mask: causal, position: alibi",
    "rope": "kv_heads: 1, mask: causal, position: {type: rope, base: 10000.0}",
    "cross": "",
}
SOURCE = {"lengths": "{x: x, lengths: lengths}", "causal_lengths": "{x: x, lengths: lengths}",
          "key_padding": "{x: x, key_padding: key_padding}", "cross": "{x: x, context: context}"}
FUSED = [k.name for k in attention_candidates() if k.name != "decomposed"]
#: ORT's error for a head size its op rejects (what the rule's reason paraphrases)
ORT_HEAD_SIZE = "head_size (must|shall) be a multiple of"


def _spec(head_dim: int) -> str:
    lines = ["nngraph: 1", f"name: hd{head_dim}", "inputs:", "  x: {shape: [batch, seq, 32], dtype: float32}",
             "  lengths: {shape: [batch], dtype: int64}", "  key_padding: {shape: [batch, seq], dtype: bool}",
             "  context: {shape: [batch, src, 32], dtype: float32}", "graph:"]
    for kind, params in KINDS.items():
        extra = f", {params}" if params else ""
        lines.append(f"  - {{name: attn_{kind}, op: attention, in: {SOURCE.get(kind, 'x')}, heads: 2, "
                     f"head_dim: {head_dim}{extra}}}")
    lines.append("outputs: {" + ", ".join(f"y_{k}: attn_{k}" for k in KINDS) + "}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    """head_dim -> (graph, module, feeds, the torch outputs, folder), built once."""
    folder = tmp_path_factory.mktemp("ort_accepts")
    out = {}
    for hd in HEAD_DIMS:
        path = folder / f"hd{hd}.yaml"
        path.write_text(_spec(hd))
        graph = load_spec(path)
        module = build_module(graph, seed=1).eval()
        randomize(module, seed=1)
        inputs = sample_inputs(graph, {"batch": 2, "seq": 6, "src": 5}, seed=2)
        want = torch_outputs(module, graph, inputs)
        out[hd] = (graph, module, {k: v.numpy() for k, v in inputs.items()}, [want[n] for n in graph.outputs], folder)
    return out


def _run(graph, module, feeds, force: dict[str, str], path) -> list[np.ndarray]:
    export_graph(graph, path, module=module, kernels={"*": "decomposed", **force}, verify=False, fuse=False)
    return make_session(path).run(None, feeds)


@pytest.mark.parametrize("kernel", FUSED)
def test_no_kernel_applies_where_ort_fails(kernel, cases):
    """Every (head_dim, mask kind) the rule accepts runs in ORT and equals torch."""
    accepted = 0
    for hd, (graph, module, feeds, want, folder) in cases.items():
        verdicts = {node: dict(c.verdicts)[kernel] for node, c in choose_all(graph, "ort-cpu").items()}
        nodes = [n for n, reason in verdicts.items() if reason is None]
        if not nodes:
            continue
        try:
            got = _run(graph, module, feeds, dict.fromkeys(nodes, kernel), folder / f"hd{hd}-{kernel}.onnx")
        except Exception as exc:  # noqa: BLE001 - ORT's failure is the finding; it names the node
            pytest.fail(f"{kernel} applies at head_dim {hd} to {nodes} but ORT fails: {exc}")
        for name, a, b in zip(graph.outputs, got, want):
            diff = float(np.abs(a - b).max())
            assert diff <= 1e-4, f"{kernel} at head_dim {hd}, {name}: differs from torch by {diff:.3g}"
        accepted += len(nodes)
    assert accepted >= len(HEAD_DIMS)  # the kernel was tried somewhere


def test_gqa_refusals_for_head_size_are_ort_failures(cases, monkeypatch):
    """Where ort-gqa's rule refuses for the head size alone, ORT refuses the op forced on those nodes with its
    own message (one file per head_dim: ORT stops at the first node it rejects)."""
    gqa = kernel_named("ort-gqa")
    refused = {}
    for hd, (graph, *_rest) in cases.items():
        for node, c in choose_all(graph, "ort-cpu").items():
            reason = dict(c.verdicts)["ort-gqa"]
            if reason is not None and "head_dim divisible by" in reason:
                refused[hd, node] = reason
    assert {hd for hd, _ in refused} == {8, 12, 18, 24}  # 12/18: not multiples of 8; 8/24 with RoPE: not of 16
    assert (12, "attn_causal") in refused and (8, "attn_rope") in refused
    monkeypatch.setattr(gqa, "defn", dataclasses.replace(gqa.defn, check=lambda ctx: None))
    for hd in sorted({hd for hd, _ in refused}):
        graph, module, feeds, _, folder = cases[hd]
        nodes = [node for h, node in refused if h == hd]
        with pytest.raises(Exception, match=ORT_HEAD_SIZE):
            _run(graph, module, feeds, dict.fromkeys(nodes, "ort-gqa"), folder / f"forced-{hd}.onnx")
