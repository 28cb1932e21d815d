"""Dense layers compiled to torch against torch.nn.Linear/Embedding with copied weights and the seed formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nngraph.compilers.torch import state_dict_for


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape, (a.shape, b.shape)
    assert (a - b).abs().max().item() <= 1e-5


def _copy_linear(src: nn.Module) -> nn.Linear:
    ref = nn.Linear(src.weight.shape[1], src.weight.shape[0], bias=src.bias is not None)
    with torch.no_grad():
        ref.weight.copy_(src.weight)
        if src.bias is not None:
            ref.bias.copy_(src.bias)
    return ref


@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_nn_linear(run_op, bias):
    model, graph = run_op(f"{{name: n, op: linear, in: x, out: 5, bias: {str(bias).lower()}}}",
                          "x: {shape: [batch, seq, 8], dtype: float32}")
    assert list(model.state_dict()) == (["n.weight", "n.bias"] if bias else ["n.weight"])
    assert sum(p.numel() for p in model.parameters()) == graph.total_params
    x = _rand(2, 3, 8)
    _close(model(x), _copy_linear(model.n)(x))
    _close(model(x), x @ model.n.weight.T + (model.n.bias if bias else 0))


def test_mlp_is_down_act_up_with_named_submodules(run_op):
    model, graph = run_op("{name: n, op: mlp, in: x, hidden: 16, out: 4, activation: gelu}")
    assert list(model.state_dict()) == ["n.up.weight", "n.up.bias", "n.down.weight", "n.down.bias"]
    assert sum(p.numel() for p in model.parameters()) == graph.total_params == 8 * 16 + 16 + 16 * 4 + 4
    up, down = _copy_linear(model.n.up), _copy_linear(model.n.down)
    x = _rand(5, 8)
    # seed 002, Transformer FFN: FFN(x) = act(x W1 + b1) W2 + b2, gelu(x) = x Φ(x)
    h = up(x)
    _close(model(x), down(h * 0.5 * (1 + torch.erf(h / math.sqrt(2)))))


def test_mlp_output_defaults_to_input_width_and_dropout_only_in_training(run_op):
    model, _ = run_op("{name: n, op: mlp, in: x, hidden: 16, activation: relu, dropout: 0.5}")
    x = _rand(64, 8)
    model.eval()
    ref = _copy_linear(model.n.down)(torch.relu(_copy_linear(model.n.up)(x)))
    _close(model(x), ref)
    model.train()
    assert not torch.allclose(model(x), ref)


def test_gated_mlp_is_swiglu(run_op):
    model, graph = run_op("{name: n, op: gated_mlp, in: x, hidden: 16}")
    assert list(model.state_dict()) == ["n.gate.weight", "n.up.weight", "n.down.weight"]
    assert sum(p.numel() for p in model.parameters()) == graph.total_params
    w, v, w2 = model.n.gate.weight, model.n.up.weight, model.n.down.weight
    x = _rand(5, 8)
    # seed 002: SwiGLU(x) = (silu(x W) ⊙ x V) W2, silu(z) = z σ(z)
    xw = x @ w.T
    _close(model(x), ((xw * torch.sigmoid(xw)) * (x @ v.T)) @ w2.T)


def test_gated_mlp_geglu_with_bias(run_op):
    model, graph = run_op("{name: n, op: gated_mlp, in: x, hidden: 16, out: 3, activation: gelu, bias: true}")
    assert sum(p.numel() for p in model.parameters()) == graph.total_params
    gate, up, down = (_copy_linear(getattr(model.n, k)) for k in ("gate", "up", "down"))
    x = _rand(5, 8)
    _close(model(x), down(F.gelu(gate(x)) * up(x)))


def test_embedding_matches_nn_embedding(run_op):
    model, graph = run_op("{name: n, op: embedding, in: t, num: 50, dim: 8}", "t: {shape: [batch, seq], dtype: int64}")
    ref = nn.Embedding(50, 8)
    with torch.no_grad():
        ref.weight.copy_(model.n.weight)
    t = torch.randint(0, 50, (2, 7))
    _close(model(t), ref(t))
    assert list(model.state_dict()) == ["n.weight"] and graph.total_params == 400


def test_embedding_padding_row_stays_zero_after_init(run_op):
    model, _ = run_op("{name: n, op: embedding, in: t, num: 10, dim: 4, padding_idx: 3}", "t: {shape: [batch], dtype: int64}")
    assert torch.equal(model.n.weight[3].detach(), torch.zeros(4))
    assert model.n.weight[4].abs().sum() > 0


TIED = """
nngraph: 1
name: tied
inputs:
  t: {shape: [batch, seq], dtype: int64}
graph:
  - {name: embed, op: embedding, in: t, num: 50, dim: 8}
  - {name: h, op: tanh, in: embed}
  - {name: logits, op: linear, in: h, out: 50, tie: embed%s}
outputs: {logits: logits}
"""


def test_tied_linear_reuses_the_embedding_weight(compile_text):
    graph, model = compile_text(TIED % "")
    assert "logits = self.embed.attend(h, self.logits.bias)  # [batch, seq, 50]" in model.source
    assert list(state_dict_for(model)) == ["embed.weight", "logits.bias"]
    assert sum(p.numel() for p in model.parameters()) == graph.total_params == 50 * 8 + 50
    t = torch.randint(0, 50, (2, 5))
    e = model.embed.weight
    _close(model(t), torch.tanh(e[t]) @ e.T + model.logits.bias)
    model(t).sum().backward()  # both uses of the one tensor contribute to its gradient
    assert e.grad is not None and model.logits.bias.grad is not None


def test_tied_linear_without_bias_has_no_module(compile_text):
    graph, model = compile_text(TIED % ", bias: false")
    assert "logits = self.embed.attend(h)  # [batch, seq, 50]" in model.source
    assert not hasattr(model, "logits")
    assert list(model.state_dict()) == ["embed.weight"] and graph.total_params == 400
    with torch.no_grad():
        model.embed.weight.mul_(2)  # one storage: changing it changes both uses
    t = torch.randint(0, 50, (1, 3))
    e = model.embed.weight
    _close(model(t), torch.tanh(e[t]) @ e.T)


def test_default_init_he_before_relu_xavier_otherwise(run_op):
    nodes = ["{name: a, op: linear, in: x, out: 2048}", "{name: r, op: relu, in: a}",
             "{name: n, op: linear, in: r, out: 512}"]
    model, _ = run_op(nodes, "x: {shape: [batch, 512], dtype: float32}")
    # He et al.: std = sqrt(2 / fan_in) (seed 000 on He initialization); Glorot uniform: bound sqrt(6 / (fan_in + fan_out))
    assert abs(model.a.weight.std().item() / math.sqrt(2 / 512) - 1) < 0.02
    bound = math.sqrt(6 / (2048 + 512))
    assert model.n.weight.abs().max().item() <= bound
    assert abs(model.n.weight.std().item() / (bound / math.sqrt(3)) - 1) < 0.02
    assert model.a.bias.abs().sum() == 0 and model.n.bias.abs().sum() == 0


def test_transformer_layers_default_to_normal_002(run_op):
    nodes = ["{name: e, op: embedding, in: t, num: 1000, dim: 256}", "{name: n, op: mlp, in: e, hidden: 1024}"]
    model, _ = run_op(nodes, "t: {shape: [batch], dtype: int64}")
    for w in (model.e.weight, model.n.up.weight, model.n.down.weight):
        assert abs(w.std().item() / 0.02 - 1) < 0.02
    assert model.n.up.bias.abs().sum() == 0


SHARED_TABLE = """
nngraph: 1
name: shared
inputs:
  src: {shape: [batch, seq], dtype: int64}
  tgt: {shape: [batch, seq], dtype: int64}
graph:
  - {name: src_embed, op: embedding, in: src, num: 30, dim: 6}
  - {name: tgt_embed, op: embedding, in: tgt, num: 30, dim: 6, tie: src_embed}
  - {name: both, op: add, in: [src_embed, tgt_embed]}
  - {name: logits, op: linear, in: both, out: 30, bias: false, tie: src_embed}
outputs: {logits: logits}
"""


def test_two_lookups_of_one_embedding_table_read_and_train_one_tensor(compile_text):
    graph, model = compile_text(SHARED_TABLE)
    assert "tgt_embed = self.src_embed(tgt)" in model.source
    assert not hasattr(model, "tgt_embed")
    assert list(state_dict_for(model)) == ["src_embed.weight"]
    assert sum(p.numel() for p in model.parameters()) == graph.total_params == 30 * 6
    src, tgt = torch.randint(0, 30, (2, 4)), torch.randint(0, 30, (2, 4))
    e = model.src_embed.weight
    _close(model(src, tgt), (e[src] + e[tgt]) @ e.T)
    model(src, tgt).sum().backward()
    # the one table's gradient holds all three uses: source lookup, target lookup, output projection
    w = e.detach().clone().requires_grad_(True)
    ((w[src] + w[tgt]) @ w.T).sum().backward()
    _close(e.grad, w.grad)
    assert e.grad[tgt[0, 0]].abs().sum() > 0
