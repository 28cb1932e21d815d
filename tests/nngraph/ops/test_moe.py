"""Mixture of experts: routing params, built-in and block experts, auxiliary outputs, errors.

Oracles: torch modules laid out like Mixtral's sparse MoE block (gate Linear(D, E, bias=False),
experts with w1/w3 [H, D] and w2 [D, H]) and like a Switch FFN, built here.
"""

from __future__ import annotations

import textwrap

import pytest
import torch
from torch import nn


def spec(nodes: str, x_shape: str = "[batch, seq, 32]", blocks: str = "", outputs: str = "{y: m}") -> str:
    return (f"nngraph: 1\nname: t\ninputs:\n  x: {{shape: {x_shape}, dtype: float32}}\n"
            + textwrap.dedent(blocks).lstrip("\n") + "graph:\n" + textwrap.indent(textwrap.dedent(nodes).strip(), "  ")
            + f"\noutputs: {outputs}\n")


def pos(text: str, token: str) -> tuple[int, int]:
    for i, line in enumerate(text.splitlines()):
        if token in line:
            return i + 1, line.index(token) + 1
    raise AssertionError(token)


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class SwiGLU(nn.Module):
    def __init__(self, d: int, h: int, bias: bool = False):
        super().__init__()
        self.w1, self.w3, self.w2 = nn.Linear(d, h, bias=bias), nn.Linear(d, h, bias=bias), nn.Linear(h, d, bias=bias)


class SparseMoE(nn.Module):
    """Mixtral-style sparse MoE block (router + experts), optionally with a shared expert and noise weights."""

    def __init__(self, d: int, h: int, e: int, expert=SwiGLU, shared: int | None = None, noisy: bool = False,
                 router_bias: bool = False, **kw):
        super().__init__()
        self.gate = nn.Linear(d, e, bias=router_bias)
        self.experts = nn.ModuleList(expert(d, h, **kw) for _ in range(e))
        self.shared = expert(d, shared, **kw) if shared else None
        self.w_noise = nn.Parameter(torch.empty(e, d)) if noisy else None


def ffn(d: int, h: int, bias: bool = False) -> nn.Module:
    return nn.Sequential(nn.Linear(d, h, bias=bias), nn.GELU(), nn.Linear(h, d, bias=bias))


def one(diagnose, text: str):
    graph, errors = diagnose(text)
    assert errors == [], errors
    return graph.nodes["m"]


def test_top2_of_8_swiglu_experts_count_like_a_mixtral_block(diagnose):
    node = one(diagnose, spec("- {name: m, op: moe, in: x, experts: 8, top_k: 2, expert: swiglu, hidden: 64}"))
    assert node.n_params == count(SparseMoE(32, 64, 8)) == 8 * 32 + 8 * 3 * 32 * 64
    assert node.outputs["out"].shape == ("batch", "seq", 32)
    for name in ("aux_loss", "z_loss", "dropped_fraction"):
        assert node.outputs[name].shape == () and node.outputs[name].dtype == "float32"


def test_mixtral_8x7b_moe_layer_has_1_409_318_912_parameters(diagnose):
    # Mixtral 8x7B: d_model 4096, expert hidden 14336, 8 experts, no biases (Jiang et al., 2024)
    node = one(diagnose, spec("- {name: m, op: moe, in: x, experts: 8, top_k: 2, hidden: 14336}", "[batch, seq, 4096]"))
    assert node.n_params == 4096 * 8 + 8 * 3 * 4096 * 14336 == 1_409_318_912


def test_switch_top1_over_token_matrix_with_ffn_experts(diagnose):
    node = one(diagnose, spec("- {name: m, op: moe, in: x, experts: 4, top_k: 1, expert: ffn, hidden: 48, "
                              "capacity_factor: 1.25}", "[tokens, 32]"))
    assert node.outputs["out"].shape == ("tokens", 32)
    assert node.n_params == count(SparseMoE(32, 48, 4, expert=ffn))


@pytest.mark.parametrize("extra,oracle", [
    ("bias: true", dict(bias=True)),
    ("router_bias: true", dict(router_bias=True)),
    ("noisy_gating: true", dict(noisy=True)),
    ("shared_expert: true", dict(shared=40)),
    ("shared_expert: true, shared_hidden: 16", dict(shared=16)),
])
def test_options_add_exactly_their_parameters(diagnose, extra, oracle):
    node = one(diagnose, spec(f"- {{name: m, op: moe, in: x, experts: 4, hidden: 40, expert: ffn, {extra}}}"))
    assert node.n_params == count(SparseMoE(32, 40, 4, expert=ffn, **oracle))


def test_swiglu_experts_with_bias(diagnose):
    node = one(diagnose, spec("- {name: m, op: moe, in: x, experts: 3, top_k: 1, hidden: 8, bias: true}"))
    assert node.n_params == count(SparseMoE(32, 8, 3, bias=True))


EXPERT_BLOCK = """
blocks:
  expert:
    inputs: [h]
    params: {width: 64}
    nodes:
      - {name: up, op: linear, in: h, out: "${width}"}
      - {name: act, op: gelu, in: up}
      - {name: down, op: linear, in: act, out: 32}
    outputs: [down]
  wrong:
    inputs: [h]
    nodes:
      - {name: up, op: linear, in: h, out: 7}
    outputs: [up]
"""


def test_experts_can_be_any_block_with_separate_weights_per_expert(diagnose):
    node = one(diagnose, spec("- {name: m, op: moe, in: x, experts: 4, top_k: 2, "
                              "expert_block: {block: expert, with: {width: 16}}, shared_expert: true}",
                              blocks=EXPERT_BLOCK))
    block = nn.Sequential(nn.Linear(32, 16), nn.GELU(), nn.Linear(16, 32))
    assert node.n_params == 4 * 32 + (4 + 1) * count(block)
    sub = node.meta["subgraphs"]["expert_block"]
    assert sub.inputs["h"].type.shape == ("expert_tokens", 32)
    assert sub.nodes["up"].out.shape == ("expert_tokens", 16)


def test_aux_losses_are_usable_scalars(diagnose):
    graph, errors = diagnose(spec("""
        - {name: m, op: moe, in: x, experts: 4, hidden: 8}
        - {name: m2, op: moe, in: m, experts: 4, hidden: 8}
        - {name: aux, op: add, in: [m.aux_loss, m2.aux_loss, m.z_loss]}
        """, outputs="{y: m2, aux: aux}"))
    assert errors == []
    assert graph.nodes["aux"].out.shape == ()


def test_top_k_above_experts_is_an_error_at_top_k(diagnose):
    text = spec("- {name: m, op: moe, in: x, experts: 4, top_k: 5, hidden: 8}")
    _, errors = diagnose(text)
    assert len(errors) == 1
    line, col, message, hint = errors[0]
    assert (line, col) == pos(text, "5,")
    assert message == "node 'm' (moe): top_k must be at most experts: expected <= 4, got 5"
    assert hint == "each token picks top_k distinct experts"


def test_capacity_factor_must_be_positive(diagnose):
    text = spec("- {name: m, op: moe, in: x, experts: 4, hidden: 8, capacity_factor: 0}")
    _, errors = diagnose(text)
    assert [(e[0], e[1], e[2]) for e in errors] == [
        (*pos(text, "0}"), "node 'm' (moe): capacity_factor must be > 0, got 0.0")]


def test_built_in_experts_need_hidden(diagnose):
    text = spec("- {name: m, op: moe, in: x, experts: 4}")
    _, errors = diagnose(text)
    assert [(e[0], e[1], e[2]) for e in errors] == [
        (*pos(text, "{name: m"), "node 'm' (moe): moe needs 'hidden' (width of the built-in experts) or 'expert_block'")]


def test_hidden_with_an_expert_block_is_an_error(diagnose):
    text = spec("- {name: m, op: moe, in: x, experts: 4, hidden: 8, expert_block: expert}", blocks=EXPERT_BLOCK)
    _, errors = diagnose(text)
    assert [(e[0], e[1]) for e in errors] == [pos(text, "8,")]
    assert errors[0][2] == "node 'm' (moe): 'hidden' sizes the built-in experts; with expert_block the block sets its own sizes"


def test_expert_block_must_preserve_the_model_width(diagnose):
    text = spec("- {name: m, op: moe, in: x, experts: 4, expert_block: wrong}", blocks=EXPERT_BLOCK)
    _, errors = diagnose(text)
    assert [(e[0], e[1], e[2]) for e in errors] == [
        (*pos(text, "wrong}"), "node 'm' (moe): an expert block must map [tokens, 32] to [tokens, 32], got [expert_tokens, 7]")]


def test_unknown_expert_block_is_reported_at_the_parameter(diagnose):
    text = spec("- {name: m, op: moe, in: x, experts: 4, expert_block: expret}", blocks=EXPERT_BLOCK)
    _, errors = diagnose(text)
    assert len(errors) == 1
    assert errors[0][:3] == (*pos(text, "expret"), "parameter 'expert_block' of node 'm' (moe): unknown block 'expret'")


def test_moe_input_must_be_tokens_by_features(diagnose):
    text = spec("- {name: m, op: moe, in: x, experts: 4, hidden: 8}", "[batch, 3, 8, 8]")
    _, errors = diagnose(text)
    assert [(e[0], e[1], e[2]) for e in errors] == [
        (*pos(text, "{name: m"), "node 'm' (moe): x must be [batch, seq, d_model] or [tokens, d_model], got [batch, 3, 8, 8]")]
