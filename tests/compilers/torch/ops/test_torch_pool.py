"""Pooling compiled to torch, against windowed reference computations and torch.nn pooling layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape, (a.shape, b.shape)
    assert (a - b).abs().max().item() <= 1e-5


IMG = "x: {shape: [batch, 3, 8, 8], dtype: float32}"


def test_max_pool2d_is_the_window_maximum(run_op):
    model, _ = run_op("{name: n, op: max_pool2d, in: x, kernel: 2}", IMG)
    x = _rand(2, 3, 8, 8)
    _close(model(x), x.unfold(2, 2, 2).unfold(3, 2, 2).amax(dim=(-1, -2)))


def test_avg_pool2d_is_the_window_mean(run_op):
    model, _ = run_op("{name: n, op: avg_pool2d, in: x, kernel: 4, stride: 2}", IMG)
    x = _rand(2, 3, 8, 8)
    _close(model(x), x.unfold(2, 4, 2).unfold(3, 4, 2).mean(dim=(-1, -2)))


@pytest.mark.parametrize("node,ref", [
    ("{name: n, op: max_pool2d, in: x, kernel: 3, stride: 2, padding: 1, ceil_mode: true}",
     nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)),
    ("{name: n, op: avg_pool2d, in: x, kernel: 3, stride: 2, padding: 1, count_include_pad: false}",
     nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)),
    ("{name: n, op: adaptive_avg_pool2d, in: x, output_size: [3, 2]}", nn.AdaptiveAvgPool2d((3, 2))),
    ("{name: n, op: adaptive_max_pool2d, in: x, output_size: 1}", nn.AdaptiveMaxPool2d(1)),
])
def test_pool_options_match_torch_nn(run_op, node, ref):
    model, graph = run_op(node, IMG)
    x = _rand(2, 3, 8, 8)
    out = model(x)
    _close(out, ref(x))
    assert out.shape[2:] == graph.nodes["n"].out.shape[2:]


def test_pool1d(run_op):
    inputs = "x: {shape: [batch, 3, 10], dtype: float32}"
    x = _rand(2, 3, 10)
    model, _ = run_op("{name: n, op: max_pool1d, in: x, kernel: 3, stride: 2, padding: 1}", inputs)
    _close(model(x), nn.MaxPool1d(3, 2, 1)(x))
    model, _ = run_op("{name: n, op: avg_pool1d, in: x, kernel: 2}", inputs)
    _close(model(x), x.reshape(2, 3, 5, 2).mean(-1))
    model, _ = run_op("{name: n, op: adaptive_avg_pool1d, in: x, output_size: 5}", inputs)
    _close(model(x), x.reshape(2, 3, 5, 2).mean(-1))


def test_global_pools_reduce_all_spatial_dims(run_op):
    x = _rand(2, 3, 8, 8)
    model, _ = run_op("{name: n, op: global_avg_pool, in: x}", IMG)
    _close(model(x), x.mean(dim=(2, 3)))
    model, _ = run_op("{name: n, op: global_max_pool, in: x, keepdim: true}", IMG)
    _close(model(x), x.amax(dim=(2, 3), keepdim=True))
