"""Every ONNX attention kernel's rule against what ONNX Runtime really does: no verdict "applies" where ORT fails.

For each head_dim of :data:`HEAD_DIMS` a tiny spec holds one attention node per mask kind of
:data:`KINDS` (all reading the same ``x``); the rule's verdicts come from it. Per kernel and head_dim,
a spec with only the nodes the rule accepts is exported with that kernel forced and run in one ORT
session: it must run and equal the torch module (max |diff| <= 1e-4). Where a rule refuses for ORT's own limits (a head size
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


INPUTS = {"lengths": "  lengths: {shape: [batch], dtype: int64}",
          "key_padding": "  key_padding: {shape: [batch, seq], dtype: bool}",
          "context": "  context: {shape: [batch, src, 32], dtype: float32}"}


def _spec(head_dim: int, kinds) -> str:
    """One attention node per mask kind of ``kinds``, all reading ``x`` (and the inputs they need)."""
    sources = [SOURCE.get(k, "x") for k in kinds]
    lines = ["nngraph: 1", f"name: hd{head_dim}", "inputs:", "  x: {shape: [batch, seq, 32], dtype: float32}"]
    lines += [line for name, line in INPUTS.items() if any(f"{name}: {name}" in src for src in sources)]
    lines.append("graph:")
    for kind in kinds:
        extra = f", {KINDS[kind]}" if KINDS[kind] else ""
        lines.append(f"  - {{name: attn_{kind}, op: attention, in: {SOURCE.get(kind, 'x')}, heads: 2, "
                     f"head_dim: {head_dim}{extra}}}")
    lines.append("outputs: {" + ", ".join(f"y_{k}: attn_{k}" for k in kinds) + "}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("ort_accepts")


def _verdicts(folder, hd: int, kernel: str) -> dict[str, str | None]:
    """mask kind -> the kernel's verdict at ``hd`` (from one spec holding every kind)."""
    path = folder / f"hd{hd}.yaml"
    if not path.exists():
        path.write_text(_spec(hd, KINDS))
    return {node[len("attn_"):]: dict(c.verdicts)[kernel] for node, c in choose_all(load_spec(path), "ort-cpu").items()}


def _run(folder, hd: int, kinds, force: str, check: bool = True):
    """Export the nodes of ``kinds`` with kernel ``force`` and run them in ORT: (ORT outputs, torch outputs)."""
    path = folder / f"hd{hd}-{force}-{'-'.join(kinds)}.yaml"
    path.write_text(_spec(hd, kinds))
    graph = load_spec(path)
    module = build_module(graph, seed=1).eval()
    randomize(module, seed=1)
    inputs = sample_inputs(graph, {"batch": 2, "seq": 6, "src": 5}, seed=2)
    want = torch_outputs(module, graph, inputs)
    onnx_path = path.with_suffix(".onnx")
    export_graph(graph, onnx_path, module=module, kernels={"*": force}, verify=False, fuse=False)
    got = make_session(onnx_path).run(None, {k: v.numpy() for k, v in inputs.items()})
    return dict(zip(graph.outputs, got)), want


@pytest.mark.parametrize("kernel", FUSED)
def test_no_kernel_applies_where_ort_fails(kernel, folder):
    """Every (head_dim, mask kind) the rule accepts runs in ORT and equals torch."""
    accepted = 0
    for hd in HEAD_DIMS:
        kinds = [k for k, reason in _verdicts(folder, hd, kernel).items() if reason is None]
        if not kinds:
            continue
        try:
            got, want = _run(folder, hd, kinds, kernel)
        except Exception as exc:  # noqa: BLE001 - ORT's failure is the finding; it names the node
            pytest.fail(f"{kernel} applies at head_dim {hd} to {kinds} but ORT fails: {exc}")
        for name, a in got.items():
            diff = float(np.abs(a - want[name]).max())
            assert diff <= 1e-4, f"{kernel} at head_dim {hd}, {name}: differs from torch by {diff:.3g}"
        accepted += len(kinds)
    assert accepted >= len(HEAD_DIMS)  # the kernel was tried somewhere


def test_gqa_refusals_for_head_size_are_ort_failures(folder, monkeypatch):
    """Where ort-gqa's rule refuses for the head size alone, ORT refuses the op forced on those nodes with its
    own message (one file per head_dim: ORT stops at the first node it rejects)."""
    gqa = kernel_named("ort-gqa")
    refused = {(hd, kind) for hd in HEAD_DIMS for kind, reason in _verdicts(folder, hd, "ort-gqa").items()
               if reason is not None and "head_dim divisible by" in reason}
    assert {hd for hd, _ in refused} == {8, 12, 18, 24}  # 12/18: not multiples of 8; 8/24 with RoPE: not of 16
    assert (12, "causal") in refused and (8, "rope") in refused
    monkeypatch.setattr(gqa, "defn", dataclasses.replace(gqa.defn, check=lambda ctx: None))
    for hd in sorted({hd for hd, _ in refused}):
        with pytest.raises(Exception, match=ORT_HEAD_SIZE):
            _run(folder, hd, [kind for h, kind in sorted(refused) if h == hd], "ort-gqa")
