"""Convolution family compiled to torch, against torch.nn layers with copied weights and explicit formulas."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> None:
    assert a.shape == b.shape, (a.shape, b.shape)
    assert (a - b).abs().max().item() <= tol


IMG = "x: {shape: [batch, 4, 9, 9], dtype: float32}"


@pytest.mark.parametrize("params,kwargs", [
    ("kernel: 3, padding: 1", dict(padding=1)),
    ("kernel: [3, 1], stride: 2, dilation: [1, 2], bias: false", dict(stride=2, dilation=(1, 2), bias=False)),
    ("kernel: 3, padding: same, groups: 2", dict(padding="same", groups=2)),
    ("kernel: 2, padding: valid", dict(padding=0)),
])
def test_conv2d_matches_nn_conv2d(run_op, params, kwargs):
    model, graph = run_op(f"{{name: n, op: conv2d, in: x, out: 6, {params}}}", IMG)
    k = model.n.weight.shape[2:]
    ref = nn.Conv2d(4, 6, tuple(k), **kwargs)
    with torch.no_grad():
        ref.weight.copy_(model.n.weight)
        if ref.bias is not None:
            ref.bias.copy_(model.n.bias)
    x = _rand(2, 4, 9, 9)
    _close(model(x), ref(x))
    assert sum(p.numel() for p in model.parameters()) == graph.total_params


def test_conv2d_is_the_seed_cross_correlation(run_op):
    # seed 002: S(i, j) = Σ_m Σ_n I(i+m, j+n) F(m, n), summed over input channels, plus the bias
    model, _ = run_op("{name: n, op: conv2d, in: x, out: 2, kernel: 3}", "x: {shape: [1, 3, 5, 5], dtype: float32}")
    x = _rand(1, 3, 5, 5)
    w, b = model.n.weight, model.n.bias
    ref = torch.zeros(1, 2, 3, 3)
    for o in range(2):
        for i in range(3):
            for j in range(3):
                ref[0, o, i, j] = (x[0, :, i:i + 3, j:j + 3] * w[o]).sum() + b[o]
    _close(model(x), ref)


def test_conv1d_matches_nn_conv1d(run_op):
    model, _ = run_op("{name: n, op: conv1d, in: x, out: 5, kernel: 3, stride: 2, padding: 1}",
                      "x: {shape: [batch, 4, 11], dtype: float32}")
    ref = nn.Conv1d(4, 5, 3, stride=2, padding=1)
    ref.load_state_dict({"weight": model.n.weight, "bias": model.n.bias})
    x = _rand(2, 4, 11)
    _close(model(x), ref(x))


def test_conv_transpose2d_matches_nn_conv_transpose2d(run_op):
    model, graph = run_op("{name: n, op: conv_transpose2d, in: x, out: 3, kernel: 3, stride: 2, padding: 1, output_padding: 1}",
                          IMG)
    ref = nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1)
    ref.load_state_dict({"weight": model.n.weight, "bias": model.n.bias})
    x = _rand(2, 4, 9, 9)
    out = model(x)
    assert out.shape == (2, 3, 18, 18) and graph.nodes["n"].out.shape == ("batch", 3, 18, 18)
    _close(out, ref(x))


def test_upsample_nearest_repeats_pixels(run_op):
    model, _ = run_op("{name: n, op: upsample, in: x, scale_factor: 2}", IMG)
    x = _rand(2, 4, 9, 9)
    _close(model(x), x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3))
    assert "F.interpolate(x, scale_factor=2, mode='nearest')" in model.source


def test_upsample_bilinear_to_a_size(run_op):
    model, _ = run_op("{name: n, op: upsample, in: x, size: [4, 6], mode: bilinear, align_corners: true}",
                      "x: {shape: [1, 1, 2, 2], dtype: float32}")
    x = torch.tensor([[[[0.0, 3.0], [6.0, 9.0]]]])
    out = model(x)
    # align_corners: the corners stay, inner points interpolate linearly
    assert out.shape == (1, 1, 4, 6)
    _close(out[0, 0, 0], torch.linspace(0, 3, 6))
    _close(out[0, 0, :, 0], torch.linspace(0, 6, 4))


def test_patch_embed_projects_row_major_patches_and_prepends_cls(run_op):
    model, graph = run_op("{name: n, op: patch_embed, in: x, patch: 2, dim: 5, cls_token: true}",
                          "x: {shape: [batch, 3, 4, 6], dtype: float32}")
    assert list(model.state_dict()) == ["n.weight", "n.bias", "n.cls"]
    assert sum(p.numel() for p in model.parameters()) == graph.total_params == 5 * 3 * 4 + 5 + 5
    x = _rand(2, 3, 4, 6)
    w, b, cls = model.n.weight, model.n.bias, model.n.cls
    patches = x.reshape(2, 3, 2, 2, 3, 2).permute(0, 2, 4, 1, 3, 5).reshape(2, 6, 12)  # (row, col) order
    tokens = patches @ w.reshape(5, 12).T + b
    _close(model(x), torch.cat([cls.expand(2, 1, 5), tokens], dim=1))


def test_conv_before_batch_norm_gets_he_fan_out_init(run_op):
    nodes = ["{name: c, op: conv2d, in: x, out: 64, kernel: 3, bias: false}", "{name: n, op: batch_norm, in: c}"]
    model, _ = run_op(nodes, "x: {shape: [batch, 32, 8, 8], dtype: float32}")
    assert abs(model.c.weight.std().item() / math.sqrt(2 / (64 * 9)) - 1) < 0.03


def test_conv_before_tanh_gets_xavier_init(run_op):
    nodes = ["{name: c, op: conv2d, in: x, out: 64, kernel: 3}", "{name: n, op: tanh, in: c}"]
    model, _ = run_op(nodes, "x: {shape: [batch, 32, 8, 8], dtype: float32}")
    bound = math.sqrt(6 / (32 * 9 + 64 * 9))
    assert model.c.weight.abs().max().item() <= bound and model.c.bias.abs().sum() == 0
