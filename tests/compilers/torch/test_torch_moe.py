"""Torch MoE: grouped dispatch vs the dense gate-weighted sum, Switch/z losses on a hand-computed case,
capacity dropping on a constructed routing, noisy gating, expert blocks, and the zoo decoders."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from nngraph.compilers.torch import build_module, load_spec
from nngraph.compilers.torch.ops.moe import MoE, grouped_dispatch

ROOT = Path(__file__).resolve().parents[3]
X3 = "x: {shape: [batch, seq, 16], dtype: float32}"
X2 = "x: {shape: [tokens, 2], dtype: float32}"
OUTS = "{y: n.out, aux: n.aux_loss, z: n.z_loss, dropped: n.dropped_fraction}"


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _swiglu(x, e):
    return F.linear(F.silu(F.linear(x, e.gate.weight)) * F.linear(x, e.up.weight), e.down.weight)


@pytest.mark.parametrize("expert", ["swiglu", "ffn"])
def test_top_k_equal_to_experts_without_capacity_is_the_dense_gate_weighted_sum(run_op, expert):
    model, _ = run_op(f"{{name: n, op: moe, in: x, experts: 4, top_k: 4, expert: {expert}, hidden: 24, bias: true}}",
                      X3, OUTS)
    x = torch.randn(3, 5, 16, generator=_gen())
    out = model(x)
    moe = model.n
    flat = x.reshape(-1, 16)
    probs = torch.softmax(flat @ moe.router.weight.T, dim=-1)
    dense = torch.zeros_like(flat)
    for e, ex in enumerate(moe.experts):
        if expert == "swiglu":
            y = F.linear(F.silu(F.linear(flat, ex.gate.weight, ex.gate.bias)) * F.linear(flat, ex.up.weight, ex.up.bias),
                         ex.down.weight, ex.down.bias)
        else:
            y = F.linear(F.gelu(F.linear(flat, ex.up.weight, ex.up.bias)), ex.down.weight, ex.down.bias)
        dense += probs[:, e:e + 1] * y
    assert (out["y"].reshape(-1, 16) - dense).abs().max().item() <= 1e-5
    assert out["dropped"].item() == 0.0


def test_top_2_mixes_the_two_best_experts_with_renormalized_gates(run_op):
    model, _ = run_op("{name: n, op: moe, in: x, experts: 6, top_k: 2, hidden: 8}", X3, OUTS)
    x = torch.randn(2, 7, 16, generator=_gen(1))
    flat = x.reshape(-1, 16)
    probs = torch.softmax(flat @ model.n.router.weight.T, dim=-1)
    want = torch.zeros_like(flat)
    for i in range(flat.shape[0]):
        top = torch.topk(probs[i], 2)
        for g, e in zip(top.values / top.values.sum(), top.indices.tolist()):
            want[i] += g * _swiglu(flat[i:i + 1], model.n.experts[e])[0]
    assert (model(x)["y"].reshape(-1, 16) - want).abs().max().item() <= 1e-5


def test_each_expert_runs_once_on_only_its_tokens(run_op):
    model, _ = run_op("{name: n, op: moe, in: x, experts: 8, top_k: 2, hidden: 8}", X3, OUTS)
    calls: list[int] = []
    for ex in model.n.experts:
        ex.register_forward_hook(lambda m, inp, out: calls.append(inp[0].shape[0]))
    model(torch.randn(4, 16, 16, generator=_gen(2)))
    assert len(calls) <= 8 and sum(calls) == 4 * 16 * 2  # N·k rows in all, not N·m


def test_switch_and_z_losses_equal_the_formulas_on_a_hand_computed_case(run_op):
    model, _ = run_op("{name: n, op: moe, in: x, experts: 2, top_k: 1, hidden: 4, normalize_top_k: false}", X2, OUTS)
    with torch.no_grad():
        model.n.router.weight.copy_(torch.eye(2))
    ln3 = math.log(3.0)
    x = torch.tensor([[ln3, 0.0], [0.0, ln3], [ln3, 0.0], [ln3, 0.0]])
    # probs per token: [.75, .25], [.25, .75], [.75, .25], [.75, .25]; first choices 0, 1, 0, 0
    # f = [3/4, 1/4], P = [0.625, 0.375] -> aux = 2 · (0.75·0.625 + 0.25·0.375) = 1.125
    # logsumexp of every token's logits = ln(3 + 1) -> z = (ln 4)²
    out = model(x)
    assert abs(out["aux"].item() - 1.125) <= 1e-6
    assert abs(out["z"].item() - math.log(4.0) ** 2) <= 1e-6
    # Switch top-1: the gate is the router probability itself
    y0 = F.linear(F.silu(F.linear(x[:1], model.n.experts[0].gate.weight)) * F.linear(x[:1], model.n.experts[0].up.weight),
                  model.n.experts[0].down.weight)
    assert torch.allclose(out["y"][0], 0.75 * y0[0], atol=1e-6)


def test_balanced_uniform_router_has_aux_loss_one(run_op):
    model, _ = run_op("{name: n, op: moe, in: x, experts: 4, top_k: 1, hidden: 4}", "x: {shape: [tokens, 8], dtype: float32}",
                      OUTS)
    with torch.no_grad():
        model.n.router.weight.zero_()
    out = model(torch.randn(12, 8, generator=_gen(3)))
    # equal probabilities: topk picks expert 0 for all tokens -> f = [1,0,0,0], P = 1/4 each -> aux = 4·(1·1/4) = 1
    assert abs(out["aux"].item() - 1.0) <= 1e-6
    assert abs(out["z"].item() - math.log(4.0) ** 2) <= 1e-6


def test_capacity_drops_the_overflow_assignments_in_priority_order():
    moe = MoE(2, 2, top_k=1, expert="ffn", hidden=3, capacity_factor=1.0, normalize_top_k=False)
    with torch.no_grad():
        moe.router.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    # 5 tokens, all prefer expert 0; capacity = ceil(1.0 · 5 · 1 / 2) = 3 -> tokens 3 and 4 dropped
    x = torch.tensor([[2.0, 0.0], [1.0, 0.0], [3.0, 0.0], [1.5, 0.0], [2.5, 0.0]])
    out, aux, z, dropped = moe(x)
    assert dropped.item() == pytest.approx(2 / 5)
    assert torch.equal(out[3:], torch.zeros(2, 2))
    p0 = torch.softmax(x @ moe.router.weight.T, -1)[:3, 0:1]
    assert torch.allclose(out[:3], p0 * moe.experts[0](x[:3]), atol=1e-6)


def test_capacity_serves_first_choices_before_second_choices():
    x, idx = torch.randn(4, 3, generator=_gen(4)), torch.tensor([[1, 0], [1, 0], [0, 1], [0, 1]])
    gates = torch.full((4, 2), 0.5)
    experts = [torch.nn.Identity(), torch.nn.Identity()]
    # capacity 2: each expert gets 4 assignments (2 first choices, 2 second choices); the first choices are kept
    out, dropped = grouped_dispatch(x, idx, gates, experts, cap=2)
    assert dropped.item() == 0.5
    assert torch.allclose(out, 0.5 * x)  # every token keeps exactly its first choice (an identity expert)
    out, dropped = grouped_dispatch(x, idx, gates, experts, cap=3)
    # expert 0: first choices of tokens 2, 3, then second choices of tokens 0, 1 -> token 0's kept, token 1's dropped;
    # expert 1: first choices of tokens 0, 1, then second choices of tokens 2, 3 -> token 2's kept, token 3's dropped
    assert dropped.item() == 0.25
    assert torch.allclose(out, x * torch.tensor([[1.0], [0.5], [1.0], [0.5]]))


def test_dropped_fraction_output_of_a_compiled_node(run_op):
    model, _ = run_op("{name: n, op: moe, in: x, experts: 4, top_k: 2, hidden: 8, capacity_factor: 0.5}", X3, OUTS)
    with torch.no_grad():
        model.n.router.weight.zero_()
        model.n.router.weight[0, 0] = 1.0
        model.n.router.weight[1, 0] = 0.5
    x = torch.randn(2, 8, 16, generator=_gen(5)).abs()  # every token: expert 0 first, expert 1 second
    # capacity = ceil(0.5 · 16 · 2 / 4) = 4 per expert; experts 0 and 1 get 16 assignments each -> 24 of 32 dropped
    assert model(x)["dropped"].item() == pytest.approx(24 / 32)


def test_noisy_gating_is_seeded_in_training_and_off_in_eval(run_op):
    model, _ = run_op("{name: n, op: moe, in: x, experts: 4, top_k: 1, hidden: 8, noisy_gating: true}", X3, OUTS)
    assert tuple(model.n.router.w_noise.shape) == (4, 16) and not model.n.router.w_noise.any()
    with torch.no_grad():
        model.n.router.w_noise.fill_(1.0)
    x = torch.randn(2, 6, 16, generator=_gen(6))
    torch.manual_seed(7)
    a = model(x)["z"]
    torch.manual_seed(7)
    b = model(x)["z"]
    c = model(x)["z"]
    assert a.item() == b.item() != c.item()
    model.eval()
    assert model(x)["z"].item() == model(x)["z"].item()


def test_gradients_reach_router_and_the_selected_experts(run_op):
    model, _ = run_op("{name: n, op: moe, in: x, experts: 4, top_k: 2, hidden: 8, shared_expert: true}", X3, OUTS)
    out = model(torch.randn(2, 16, 16, generator=_gen(8)))
    (out["y"].square().mean() + 0.01 * out["aux"] + 0.001 * out["z"]).backward()
    assert model.n.router.weight.grad.abs().sum() > 0
    assert model.n.shared_expert.down.weight.grad.abs().sum() > 0
    assert sum(ex.down.weight.grad is not None for ex in model.n.experts) >= 2


def test_expert_blocks_get_their_own_weights_and_the_front_end_count(compile_text):
    text = """nngraph: 1
name: t
inputs:
  x: {shape: [tokens, 16], dtype: float32}
blocks:
  ex:
    inputs: [h]
    nodes:
      - {name: fc, op: linear, in: h, out: 32}
      - {name: act, op: relu, in: fc}
      - {name: proj, op: linear, in: act, out: 16}
    outputs: [proj]
graph:
  - {name: n, op: moe, in: x, experts: 3, top_k: 3, expert_block: ex, shared_expert: true}
outputs: {y: n.out}
"""
    graph, model = compile_text(text)
    assert sum(p.numel() for p in model.parameters()) == graph.total_params == 3 * 16 + 4 * (16 * 32 + 32 + 32 * 16 + 16)
    keys = list(model.state_dict())
    assert keys[:3] == ["n.router.weight", "n.experts.0.fc.weight", "n.experts.0.fc.bias"]
    assert "n.shared_expert.proj.weight" in keys
    w = [model.n.experts[i].fc.weight for i in range(3)]
    assert not torch.equal(w[0], w[1]) and not torch.equal(w[1], w[2])
    x = torch.randn(5, 16, generator=_gen(9))
    probs = torch.softmax(x @ model.n.router.weight.T, -1)

    def block(m, h):
        return m.proj(torch.relu(m.fc(h)))

    want = sum(probs[:, e:e + 1] * block(model.n.experts[e], x) for e in range(3)) + block(model.n.shared_expert, x)
    assert (model(x) - want).abs().max().item() <= 1e-5
    again = build_module(graph, seed=0)
    assert torch.equal(again.n.experts[2].fc.weight, w[2])  # the same seed rebuilds the same experts


def test_expert_block_model_emits_standalone_python(compile_text, tmp_path):
    from nngraph.compilers.torch import emit_python

    text = """nngraph: 1
name: t
inputs:
  x: {shape: [tokens, 8], dtype: float32}
blocks:
  ex:
    inputs: [h]
    nodes:
      - {name: fc, op: linear, in: h, out: 8}
    outputs: [fc]
graph:
  - {name: n, op: moe, in: x, experts: 2, top_k: 1, expert_block: ex}
outputs: {y: n.out}
"""
    graph, model = compile_text(text)
    path = tmp_path / "gen_moe.py"
    path.write_text(emit_python(graph))
    namespace: dict = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)  # noqa: S102 - our own generated file
    rebuilt = namespace["T"](seed=0)
    x = torch.randn(4, 8, generator=_gen(10))
    assert torch.equal(rebuilt(x), model(x))


@pytest.mark.parametrize("name", ["mixtral_style", "switch_style"])
def test_moe_decoders_compile_with_the_ir_count_and_train(name):
    graph = load_spec(ROOT / "specs" / f"{name}.yaml", ["layers=1"] if name == "mixtral_style" else ["pairs=1"])
    model = build_module(graph, seed=0)
    assert sum(p.numel() for p in model.parameters()) == graph.total_params
    tokens = torch.randint(0, 1024, (2, 12), generator=_gen(11))
    logits = model(tokens)
    assert logits.shape == (2, 12, 1024)
    F.cross_entropy(logits.reshape(-1, 1024), tokens.reshape(-1)).backward()
    assert model.embed_tokens.weight.grad is not None if name == "mixtral_style" else model.embed.weight.grad is not None
