"""A new mask and a new position encoding are one registration each: the planner, every torch kernel and the
ONNX exporter pick them up.

The test registers (here, not in the library) a mask ``even_band`` — keys 0 <= i - j < width with i - j even,
declared with its band, its diagonal and no native form — and a score-bias position ``distance_penalty``
(B_ij = -slope·|i - j|, the same for every head) by its formula alone, no torch code. Then:

* ``--explain`` for the CPU target gives true reasons: the banded kernel applies (the declared band), no kernel
  is told the mask "may leave a query with no visible key" (the declared diagonal);
* every torch kernel that applies gives the float64 reference's output (max |diff| <= 1e-5), forward and, for
  kernels with a backward, gradients;
* every ONNX kernel that applies gives the decomposed export's output in ONNX Runtime (max |diff| <= 1e-5), and
  GroupQueryAttention (always causal, no explicit mask) says why it does not apply.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from nngraph import load_spec
from nngraph.attention import masks, positions
from nngraph.attention.bands import Band
from nngraph.compilers.passes.explain import format_explain
from nngraph.compilers.passes.lowering import decide
from nngraph.compilers.torch import build_module
from nngraph.compilers.torch.ops import attention_kernels_flex as flex
from nngraph.compilers.torch.ops import attention_positions as pos
from nngraph.compilers.torch.ops.attention_kernels import LoweredAttention
from nngraph.registry import p_float, p_int

T, B, D = 70, 2, 32

SPEC = """nngraph: 1
name: registered
inputs:
  x: {shape: [batch, seq, 32], dtype: float32}
graph:
  - {name: attn, op: attention, in: x, heads: 4, mask: {type: even_band, width: 9},
     position: {type: distance_penalty, slope: 0.25}}
outputs: {y: attn}
"""


@pytest.fixture(scope="module", autouse=True)
def registered():
    """Register the mask and the position (its formula: no torch hooks) for this module only."""

    @masks.register_mask("even_band", params={"width": p_int("keys per query, counting the query")},
                         reach=lambda width: Band(width - 1, 0), diagonal=True)
    def even_band(b, h, q_idx, kv_idx, width):
        """Keys 0 <= i - j < width with i - j even."""
        d = q_idx - kv_idx
        return (d >= 0) & (d < width) & ((d % 2) == 0)

    positions.register_position("distance_penalty", "score_bias", {"slope": p_float("penalty per step", 0.1)},
                                "B_ij = -slope·|i - j|", score=lambda h, q_idx, kv_idx, slope: -slope * abs(q_idx - kv_idx))
    old = flex.set_compile(False)
    yield
    flex.set_compile(old)
    masks.MASKS.pop("even_band")
    positions.POSITIONS.pop("distance_penalty")


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    path = tmp_path_factory.mktemp("registered") / "spec.yaml"
    path.write_text(SPEC)
    return load_spec(path)


def _reference(graph):
    ref = build_module(graph, seed=0).attn
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return ref


def _close(a, b, what, tol=1e-5):
    err = (a - b).abs().max().item()
    assert err <= tol, f"{what}: max abs diff {err:.2e}"


def test_the_plan_uses_the_declared_facts_and_explains_them_truly(graph):
    d = decide(graph, graph.nodes["attn"], "cpu", "inference", kv_len=4096)
    by_kernel = {c.kernel: c for c in d.candidates}
    assert by_kernel["local"].reason is None and by_kernel["local"].config["band"] == [8, 0]
    assert by_kernel["reference"].reason is None and by_kernel["sdpa"].reason is None
    assert not any(c.reason and "no visible key" in c.reason for c in d.candidates)
    assert not any(c.config and c.config.get("fix_empty_rows") for c in d.candidates)
    text = format_explain([d], "cpu", kv_len=4096)
    assert "mask even_band(width=9), position distance_penalty" in text
    assert d.kernel == "local", text  # 9 keys per query of 4096: the band wins


def test_the_derived_bias_is_the_formula_at_every_position(graph):
    """The dense bias the torch back end derives (the reference's term) against -slope·|i - j| written out, with the
    queries at a cache offset; the formula also runs on plain ints and numpy arrays (the front end's duck typing)."""
    ref, offset, q_len, kv_len = _reference(graph), 5, 3, 9
    got = ref.score_bias(torch.zeros(1, 4, q_len, 8, dtype=torch.float64), q_len, kv_len, offset)
    want = [[-0.25 * abs(i + offset - j) for j in range(kv_len)] for i in range(q_len)]
    assert got.shape == (1, 1, q_len, kv_len) and got.dtype == torch.float64
    assert got[0, 0].tolist() == want
    half = ref.score_bias(torch.zeros(1, 4, 1, 8, dtype=torch.bfloat16), 1, 1002, 1001)  # query 1001, keys 0..1001
    assert half.dtype == torch.bfloat16 and half[0, 0, 0, -2:].tolist() == [-0.25, 0.0]  # positions exact past 256
    score = positions.POSITIONS["distance_penalty"].score
    assert score(2, 7, 3, slope=0.25) == -1.0
    assert score(0, np.arange(3)[:, None], np.arange(4), slope=0.5).tolist() == [[0, -0.5, -1, -1.5], [-0.5, 0, -0.5, -1],
                                                                              [-1, -0.5, 0, -0.5]]


def test_every_applicable_torch_kernel_equals_the_reference(graph):
    ref = _reference(graph)
    assert "distance_penalty" not in pos.TORCH_POSITIONS and isinstance(ref.hooks, pos.ScoreFormula)  # derived
    d = decide(graph, graph.nodes["attn"], "cpu", "inference", kv_len=T)
    gen = torch.Generator().manual_seed(1)
    x, w = torch.randn(B, T, D, generator=gen), torch.randn(B, T, D, generator=gen)
    oracle, xr = copy.deepcopy(ref).double(), x.double().requires_grad_()
    want = oracle(xr)
    (want * w.double()).sum().backward()
    configs = {c.kernel: c.config for c in d.candidates if c.reason is None and c.kernel != "reference"}
    assert {"sdpa", "local"} <= set(configs)
    for kernel, cfg in configs.items():
        cfg = dict(cfg, chunk=16) if kernel == "local" else cfg  # tiles of 16: 70 queries make a partial last tile
        low = LoweredAttention.from_reference(copy.deepcopy(ref), {"tiers": [dict(cfg, min_kv=0, min_q=0)]})
        if cfg.get("backward", True):
            xl = x.clone().requires_grad_()
            got = low(xl)
            assert low.last_kernel == kernel
            _close(got, want, f"{kernel} forward")
            (got * w).sum().backward()
            _close(xl.grad, xr.grad, f"{kernel} d/dx", 1e-4)
        with torch.no_grad():
            got = low(x)
        assert low.last_kernel == kernel
        _close(got, want.detach(), f"{kernel} forward without autograd")


def test_every_applicable_onnx_kernel_equals_the_decomposed_export(graph, tmp_path):
    from nngraph.compilers.onnx.export import export_graph
    from nngraph.compilers.onnx.inputs import sample_inputs
    from nngraph.compilers.onnx.kernels import choose_all
    from nngraph.compilers.onnx.runner import make_session

    choice = choose_all(graph, "ort-cpu")["attn"]
    verdicts = dict(choice.verdicts)
    applies = {k for k, reason in verdicts.items() if reason is None}
    assert applies == {"ort-mha", "onnx-attention", "decomposed"}
    assert verdicts["ort-gqa"] == "always causal, the mask is an explicit mask"
    module = build_module(graph, seed=1).eval()
    files = {}
    for kernel in sorted(applies):
        files[kernel] = tmp_path / f"{kernel}.onnx"
        export_graph(graph, files[kernel], module=module, kernels={"*": kernel}, verify=False, fuse=False)
    with torch.no_grad():
        for seed, sizes in enumerate(({"batch": 2, "seq": 12}, {"batch": 3, "seq": 17})):
            inputs = sample_inputs(graph, sizes, seed=seed)
            feeds = {k: v.numpy() for k, v in inputs.items()}
            want = make_session(files["decomposed"]).run(None, feeds)[0]
            assert float(np.abs(want - module(**inputs).numpy()).max()) <= 1e-5
            for kernel, path in files.items():
                got = make_session(path).run(None, feeds)[0]
                assert float(np.abs(got - want).max()) <= 1e-5, (kernel, sizes)
