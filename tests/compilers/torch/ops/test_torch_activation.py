"""Torch activations against torch's own reference functions (fp32, max abs diff <= 1e-5)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

CASES = [
    ("relu", "", lambda x: torch.clamp(x, min=0)),
    ("gelu", "", lambda x: 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))),
    ("gelu", ", approximate: tanh",
     lambda x: 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))),
    ("silu", "", lambda x: x * torch.sigmoid(x)),
    ("tanh", "", lambda x: (torch.exp(x) - torch.exp(-x)) / (torch.exp(x) + torch.exp(-x))),
    ("sigmoid", "", lambda x: 1 / (1 + torch.exp(-x))),
    ("elu", ", alpha: 0.5", lambda x: torch.where(x > 0, x, 0.5 * (torch.exp(x) - 1))),
    ("leaky_relu", ", negative_slope: 0.2", lambda x: torch.where(x > 0, x, 0.2 * x)),
    ("softplus", ", beta: 2.0", lambda x: torch.log1p(torch.exp(2.0 * x)) / 2.0),
]


@pytest.mark.parametrize("op,extra,formula", CASES, ids=[f"{c[0]}{c[1]}" for c in CASES])
def test_activation_matches_its_formula(run_op, op, extra, formula):
    model, _ = run_op(f"{{name: n, op: {op}, in: x{extra}}}")
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(0)) * 3
    assert (model(x) - formula(x)).abs().max().item() <= 1e-5


def test_gelu_tanh_is_written_as_one_readable_call(run_op):
    model, _ = run_op("{name: n, op: gelu, in: x, approximate: tanh}")
    assert "n = F.gelu(x, approximate='tanh')  # [batch, 8]" in model.source


def test_activation_params_reach_the_generated_call(run_op):
    model, _ = run_op("{name: n, op: leaky_relu, in: x, negative_slope: 0.2}")
    assert "F.leaky_relu(x, negative_slope=0.2)" in model.source
    x = torch.randn(3, 8)
    assert torch.equal(model(x), F.leaky_relu(x, 0.2))
