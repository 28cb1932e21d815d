"""The fusion pass: attention written out of primitive ops (specs/attention_written_out.yaml) becomes one
``sdpa`` node per core, declines look-alikes with the reason, reports what it changed, and the fused and
lowered models compute what the written-out ops compute (forward and gradients)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nngraph.compilers.lowered import compile_for
from nngraph.compilers.passes import explain, explain_data, fuse, lower
from nngraph.compilers.torch import build_module
from nngraph import load_spec

SPEC = Path(__file__).resolve().parents[3] / "specs" / "attention_written_out.yaml"


@pytest.fixture(scope="module")
def graph():
    return load_spec(SPEC)


def _inputs(t: int = 11):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, t, 64, generator=g)
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    mask = torch.zeros(2, 1, t, t).masked_fill(~causal, -1e9)
    return x, mask


def test_both_written_out_cores_fold_into_sdpa_nodes(graph):
    result = fuse(graph)
    assert [(c.rule, c.node) for c in result.changes] == [("fuse_attention", "ctx1"), ("fuse_attention", "ctx2")]
    assert set(result.changes[0].removed) == {"scores1", "masked1", "probs1", "drop1"}
    assert set(result.changes[1].removed) == {"scores2", "scaled2", "probs2", "k2_tt"}
    fused = result.graph
    a, b = fused.nodes["ctx1"], fused.nodes["ctx2"]
    assert (a.op, a.params) == ("sdpa", {"scale": 0.25, "dropout": 0.1, "causal": False})
    assert {k: str(v) for k, v in a.inputs.items()} == {"q": "q1_t", "k": "k1_t", "v": "v1_t", "bias": "mask"}
    assert (b.params["scale"], b.inputs["bias"], str(b.inputs["k"])) == (0.25, None, "k2_t")
    assert a.outputs == graph.nodes["ctx1"].outputs and a.pos == graph.nodes["ctx1"].pos
    assert len(fused.nodes) == len(graph.nodes) - 8
    assert fused.total_params == graph.total_params == 33_280
    # the input graph is untouched (passes return new graphs)
    assert graph.nodes["ctx1"].op == "matmul" and "scores1" in graph.nodes


def test_fused_and_lowered_models_equal_the_written_out_ops(graph):
    ref = build_module(graph, seed=0).eval()
    fused = build_module(fuse(graph).graph, seed=0).eval()
    lowered, results = compile_for(graph, "cpu", "training", seed=0)
    lowered.eval()
    assert [len(r.changes) for r in results] == [2, 2]
    assert "fused_sdpa" in fused.source and "fused_sdpa" in lowered.source
    x, mask = _inputs()
    outs, grads = [], []
    for model in (ref, fused, lowered):
        xi = x.clone().requires_grad_()
        out = model(xi, mask)
        out.square().sum().backward()
        outs.append(out.detach())
        grads.append(xi.grad)
    for out, grad in zip(outs[1:], grads[1:]):
        assert (out - outs[0]).abs().max() <= 1e-5
        assert (grad - grads[0]).abs().max() <= 1e-5 * max(1.0, grads[0].abs().max().item())
    plan = lowered_plan(results[1].graph)
    assert plan == {"ctx1": "sdpa", "ctx2": "sdpa"}


def lowered_plan(g):
    return {n: node.params["kernel"]["tiers"][0]["kernel"] for n, node in g.nodes.items() if node.op == "sdpa"}


def test_dropout_of_the_fused_core_follows_train_and_eval(graph):
    model, _ = compile_for(graph, "cpu", "training", seed=0)
    x, mask = _inputs()
    model.eval()
    assert torch.equal(model(x, mask), model(x, mask))
    model.train()
    torch.manual_seed(0)
    a = model(x, mask)
    torch.manual_seed(1)
    assert not torch.equal(a, model(x, mask))


def _written(spec_file, scores_extra: str = "", softmax_dim: int = -1, outputs: str = "[ctx]"):
    return load_spec(spec_file(f"""
        nngraph: 1
        name: w
        inputs:
          q: {{shape: [batch, 4, seq, 8], dtype: float32}}
          k: {{shape: [batch, 4, seq, 8], dtype: float32}}
          v: {{shape: [batch, 4, seq, 8], dtype: float32}}
        graph:
          - {{name: scores, op: matmul, in: [q, k], transpose_b: true, scale: 0.35}}
          - {{name: probs, op: softmax, in: scores, dim: {softmax_dim}}}
          - {{name: ctx, op: matmul, in: [probs, v]}}
          {scores_extra}
        outputs: {outputs}
    """))


def test_a_core_whose_scores_are_also_read_elsewhere_is_declined_with_the_reason(spec_file):
    g = _written(spec_file, "- {name: tap, op: reduce, in: scores, mode: sum, dim: -1}", outputs="{ctx: ctx, tap: tap}")
    result = fuse(g)
    assert not result.changed and result.summary() == "no changes"
    assert result.skipped == [("ctx", "fuse_attention", "'scores' is read by 2 nodes; the fused kernel would hide it")]


def test_a_softmax_over_the_query_dim_is_not_attention(spec_file):
    result = fuse(_written(spec_file, softmax_dim=-2))
    assert result.skipped == [("ctx", "fuse_attention", "softmax runs over dim -2, not the key dim (-1)")]


def test_intermediate_graph_outputs_stay(spec_file):
    result = fuse(_written(spec_file, outputs="{ctx: ctx, probs: probs}"))
    assert result.skipped == [("ctx", "fuse_attention", "'probs' is a graph output, so the intermediate must stay")]


def test_an_unrelated_graph_is_left_alone(spec_file):
    g = load_spec(Path(__file__).resolve().parents[3] / "specs" / "mlp.yaml")
    assert fuse(g).graph is g and lower(g, "cpu").changes == []


def test_a_plain_written_core_on_rank4_inputs_fuses_and_runs(spec_file):
    g = _written(spec_file)
    fused = fuse(g)
    assert fused.changes[0].detail == "sdpa(q=q, k=k, v=v, scale=0.35)"
    gen = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 4, 9, 8, generator=gen) for _ in range(3))
    want = build_module(g)(q, k, v)
    model, _ = compile_for(g, "cpu")
    assert (model(q, k, v) - want).abs().max() <= 1e-5


def test_explain_lists_the_fused_nodes_with_their_kernels(graph):
    data = explain_data(explain(graph, "cpu", "inference"))
    assert [(d["node"], d["op"], d["kernel"]) for d in data] == [("ctx1", "sdpa", "sdpa"), ("ctx2", "sdpa", "sdpa")]
    ctx1 = {c["kernel"]: c["verdict"] for c in data[0]["candidates"]}
    assert ctx1["flex"] == "rejected: lowers attention/attention_lowered nodes only"
    assert ctx1["sdpa"].startswith("chosen (all lengths)") and "bias" in ctx1["sdpa"]
    assert data[0]["mask"] == "none + bias input"
