"""Each fused ONNX attention kernel computes what the decomposed export computes (max |diff| <= 1e-5 in ORT).

For every mask/position case below, one tiny spec (one attention node, randomized weights) is
exported once with the decomposed kernel and once with every kernel that applies (forced), all
from the same torch module; the files run in ONNX Runtime on the same inputs at sizes that are
not the trace sizes. Each file must hold the fused op it claims, and kernels that do not apply
must say why (the reasons ``--explain`` prints).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from nngraph.compilers.onnx.export import export_graph, plan
from nngraph.compilers.onnx.inputs import sample_inputs
from nngraph.compilers.onnx.kernels import ExportOptions, attention_candidates, choose_all
from nngraph.compilers.onnx.runner import make_session
from nngraph.compilers.torch import build_module
from nngraph import load_spec

from onnx_support import randomize

CASES = {
    # name: (extra inputs, attention "in", attention params, kernels expected to apply)
    "causal": ("", "x", "mask: causal", {"ort-gqa", "ort-mha", "onnx-attention"}),
    "key_padding_lengths": ("lengths: {shape: [batch], dtype: int64}", "{x: x, lengths: lengths}",
                            "mask: key_padding", {"ort-mha", "onnx-attention"}),
    "key_padding_mask": ("key_padding: {shape: [batch, seq], dtype: bool}", "{x: x, key_padding: key_padding}",
                         "mask: key_padding", {"ort-mha", "onnx-attention"}),
    "causal_lengths": ("lengths: {shape: [batch], dtype: int64}", "{x: x, lengths: lengths}",
                       "mask: {all: [causal, key_padding]}", {"ort-gqa", "ort-mha", "onnx-attention"}),
    "sliding_window": ("", "x", "mask: {type: sliding_window, window: 3}", {"ort-gqa", "ort-mha", "onnx-attention"}),
    "alibi_causal": ("", "x", "mask: causal, position: alibi", {"ort-gqa", "ort-mha", "onnx-attention"}),
    "t5_relative_bias": ("", "x", "position: {type: t5_bias, num_buckets: 8, max_distance: 16}, scale: 1.0",
                         {"ort-mha", "onnx-attention"}),
    "gqa_rope": ("", "x", "kv_heads: 2, mask: causal, position: {type: rope, base: 10000.0}",
                 {"ort-gqa", "onnx-attention"}),
    "partial_rope": ("", "x", "kv_heads: 2, head_dim: 32, mask: causal, "
                     "position: {type: rope, base: 10000.0, fraction: 0.5}", {"ort-gqa", "onnx-attention"}),
    "prefix_lm_explicit": ("", "x", "mask: {type: prefix_lm, prefix: 2}", {"ort-mha", "onnx-attention"}),
    "cross": ("context: {shape: [batch, src, 32], dtype: float32}", "{x: x, context: context}", "",
              {"ort-mha", "onnx-attention"}),
    # per-row position ids: biases are computed from them in the graph; GQA's own rotary cannot take them
    "alibi_row_positions": ("positions: {shape: [batch, seq], dtype: int64}", "{x: x, positions: positions}",
                            "mask: causal, position: alibi", {"ort-gqa", "ort-mha", "onnx-attention"}),
    "rope_row_positions": ("positions: {shape: [batch, seq], dtype: int64}", "{x: x, positions: positions}",
                           "kv_heads: 2, mask: causal, position: {type: rope, base: 10000.0}", {"onnx-attention"}),
}
FUSED = {"ort-gqa": "GroupQueryAttention", "ort-mha": "MultiHeadAttention", "onnx-attention": "Attention"}


def _spec(extra: str, src: str, params: str) -> str:
    lines = ["nngraph: 1", "name: attn_case", "inputs:", "  x: {shape: [batch, seq, 64], dtype: float32}"]
    lines += [f"  {extra}"] if extra else []
    lines += ["graph:", f"  - {{name: attn, op: attention, in: {src}, heads: 4{', ' + params if params else ''}}}",
              "outputs: {y: attn}", ""]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def case_files(tmp_path_factory):
    """name -> (graph, {kernel: onnx path}), exported lazily once per case."""
    cache: dict[str, tuple] = {}
    folder = tmp_path_factory.mktemp("kernels")

    def get(name: str):
        if name not in cache:
            extra, src, params, _ = CASES[name]
            spec = folder / f"{name}.yaml"
            spec.write_text(_spec(extra, src, params))
            graph = load_spec(spec)
            module = build_module(graph, seed=1).eval()
            randomize(module, seed=1)
            files = {}
            for choice in ("decomposed", *sorted(CASES[name][3])):
                path = folder / f"{name}-{choice}.onnx"
                # no graph fusions: each file must hold its kernel's own op (packed_qkv would turn MHA into Attention)
                export_graph(graph, path, module=module, kernels={"*": choice}, verify=False, fuse=False)
                files[choice] = path
            cache[name] = (graph, files)
        return cache[name]

    return get


@pytest.mark.parametrize("case", sorted(CASES))
def test_kernels_that_apply_are_the_expected_ones(case, case_files, tmp_path):
    graph, _ = case_files(case)
    choice = choose_all(graph, "ort-cpu")["attn"]
    applies = {name for name, reason in choice.verdicts if reason is None}
    assert applies == CASES[case][3] | {"decomposed"}
    assert choice.kernel.name == [k.name for k in attention_candidates() if k.name in applies][0]


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_applicable_kernel_matches_the_decomposed_export(case, case_files):
    graph, files = case_files(case)
    ref_session = make_session(files["decomposed"])
    assert not any(n.op_type in FUSED.values() for n in onnx.load(str(files["decomposed"])).graph.node)
    for seed, sizes in enumerate(({"batch": 2, "seq": 6, "src": 5}, {"batch": 5, "seq": 9, "src": 4})):
        inputs = sample_inputs(graph, sizes, seed=seed + 3)
        feeds = {k: v.numpy() for k, v in inputs.items()}
        want = ref_session.run(None, feeds)[0]
        for kernel, path in files.items():
            if kernel == "decomposed":
                continue
            ops = [n.op_type for n in onnx.load(str(path)).graph.node]
            assert ops.count(FUSED[kernel]) == 1, (kernel, ops)
            got = make_session(path).run(None, feeds)[0]
            diff = float(np.abs(got - want).max())
            assert diff <= 1e-5, f"{case}: {kernel} differs from decomposed by {diff:.3g} at {sizes}"


def test_kernels_say_why_they_do_not_apply(spec_file):
    path = spec_file(_spec("", "x", "kv_heads: 2, mask: {all: [causal, {type: strided, stride: 2}]}, "
                                  "position: {type: rope, base: 10000.0}"))
    node = load_spec(path).nodes["attn"]
    reasons = {k.name: k.applies(node, "ort-cpu") for k in attention_candidates()}
    assert "no grouped-query support: 2 key/value heads for 4 query heads" in reasons["ort-mha"]
    assert "needs an explicit mask" in reasons["ort-gqa"]
    assert reasons["onnx-attention"] is None and reasons["decomposed"] is None
    standard = {k.name: k.applies(node, "onnx") for k in attention_candidates()}
    assert "contrib op" in standard["ort-gqa"] and "contrib op" in standard["ort-mha"]
    old = {k.name: k.applies(node, "ort-cpu", ExportOptions(opset=18)) for k in attention_candidates()}
    assert old["onnx-attention"] == "the ONNX Attention op needs opset 23, the export uses opset 18"


def test_gqa_rope_needs_head_dim_and_rotated_dims_multiple_of_16(spec_file):
    path = spec_file(_spec("", "x", "head_dim: 8, mask: causal, position: {type: rope, base: 10000.0}"))
    node = load_spec(path).nodes["attn"]
    gqa = next(k for k in attention_candidates() if k.name == "ort-gqa")
    assert gqa.applies(node, "ort-cpu") == "ORT's rotary needs head_dim divisible by 16, got 8"
    path = spec_file(_spec("", "x", "mask: causal, position: {type: rope, base: 10000.0, fraction: 0.5}"))
    node = load_spec(path).nodes["attn"]  # head_dim 16, 8 rotated dims: ORT wants cos_cache's r/2 a multiple of 8
    assert gqa.applies(node, "ort-cpu") == "ORT's rotary needs the rotated dims divisible by 16, got 8"


def test_lowering_pass_target_objects_are_accepted(spec_file):
    """compilers/passes/rules/lower_kernels.py calls applies(IR node, nngraph.compilers.targets.Target)."""
    targets = pytest.importorskip("nngraph.compilers.targets")
    node = load_spec(spec_file(_spec("", "x", "mask: causal"))).nodes["attn"]
    verdicts = {k.name: k.applies(node, targets.get_target("ort-cpu")) for k in attention_candidates()}
    assert verdicts == {"ort-gqa": None, "ort-mha": None, "onnx-attention": None, "decomposed": None}
    cuda = targets.get_target("ort-cuda")
    assert "float16/bfloat16 only" in next(k for k in attention_candidates() if k.name == "ort-gqa").applies(node, cuda)


def test_forcing_a_kernel_that_does_not_apply_is_an_error(spec_file):
    graph = load_spec(spec_file(_spec("", "x", "kv_heads: 2, mask: causal")))
    with pytest.raises(ValueError, match="attention kernel 'ort-mha' does not apply to node 'attn' on ort-cpu: no "
                                         "grouped-query support"):
        plan(graph, "ort-cpu", kernels={"attn": "ort-mha"})
    with pytest.raises(ValueError, match="unknown attention kernel 'flash'"):
        plan(graph, "ort-cpu", kernels={"*": "flash"})


@pytest.mark.parametrize("kernel", ["ort-gqa", "onnx-attention", "ort-mha"])
def test_kv_cache_decoding_step_matches_the_decomposed_export(kernel, spec_file, tmp_path):
    """Prefill with an empty past, then one cached token: fused kernel == decomposed (RoPE + GQA for gqa/attention)."""
    params = ("kv_heads: 2, mask: causal, position: {type: rope, base: 10000.0}" if kernel != "ort-mha"
              else "mask: causal, position: alibi")
    spec = spec_file(f"""
        nngraph: 1
        name: dec
        inputs:
          tokens: {{shape: [batch, seq], dtype: int64}}
        graph:
          - {{name: embed, op: embedding, in: tokens, num: 50, dim: 64}}
          - {{name: attn, op: attention, in: embed, heads: 4, {params}}}
          - {{name: head, op: linear, in: attn, out: 50}}
        outputs: {{logits: head}}
        """)
    graph = load_spec(spec)
    module = build_module(graph, seed=2).eval()
    randomize(module, seed=2)
    outs = {}
    for k in ("decomposed", kernel):
        path = tmp_path / f"{k}.onnx"
        res = export_graph(graph, path, module=module, kernels={"*": k}, kv_cache=True)
        assert res.verification.ok  # the export's own prefill + decode check against torch
        outs[k] = make_session(path)
    tokens = np.random.default_rng(0).integers(0, 50, (2, 7))
    empty = np.zeros((2, res.kv_cache["layers"][0]["kv_heads"], 0, 16), np.float32)
    results = {}
    for k, sess in outs.items():
        first = sess.run(None, {"tokens": tokens[:, :6], "past.0.key": empty, "past.0.value": empty})
        second = sess.run(None, {"tokens": tokens[:, 6:], "past.0.key": first[1], "past.0.value": first[2]})
        results[k] = (first[0], second[0])
    for a, b in zip(results["decomposed"], results[kernel]):
        assert float(np.abs(a - b).max()) <= 1e-5


def test_row_positions_export_matches_torch_and_refusals_say_why(spec_file, tmp_path):
    """Packed rows (ids restarting mid-row): the decomposed export equals the torch module in ORT; GQA's rotary and
    a KV cache with a position bias refuse the node with their reasons."""
    import torch

    extra, src = CASES["rope_row_positions"][:2]
    graph = load_spec(spec_file(_spec(extra, src, "kv_heads: 2, mask: causal, position: {type: rope, base: 10000.0}")))
    module = build_module(graph, seed=1).eval()
    randomize(module, seed=1)
    path = tmp_path / "rope.onnx"
    export_graph(graph, path, module=module, kernels={"*": "decomposed"}, verify=False)
    x = torch.randn(2, 7, 64, generator=torch.Generator().manual_seed(0))
    ids = torch.tensor([[0, 1, 2, 0, 1, 2, 3], [4, 5, 6, 7, 8, 9, 10]])
    with torch.no_grad():
        want = module(x, ids).numpy()
    got = make_session(path).run(None, {"x": x.numpy(), "positions": ids.numpy()})[0]
    assert float(np.abs(got - want).max()) <= 1e-5
    node = graph.nodes["attn"]
    gqa = next(k for k in attention_candidates() if k.name == "ort-gqa")
    assert "not at per-row position ids" in gqa.applies(node, "ort-cpu")
    alibi = load_spec(spec_file(_spec(extra, src, "mask: causal, position: alibi"), "alibi.yaml")).nodes["attn"]
    cached = {k.name: k.applies(alibi, "ort-cpu", ExportOptions(kv_cache=True)) for k in attention_candidates()}
    assert all("past keys' position ids are not an export input" in why for why in cached.values())
