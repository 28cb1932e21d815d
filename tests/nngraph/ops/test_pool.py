"""pool family: max/avg pooling, adaptive and global pooling shapes.

Oracle: the torch.nn pooling layers run on real tensors (their output shapes), and
torch's own error for over-padded windows.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from _onenode import node_line, spec_text, value_col


def infer_one(diagnose, shape, node):
    graph, errors = diagnose(spec_text({"x": (shape, "float32")}, [node]))
    assert not errors, errors
    return graph.nodes["n"].outputs["out"], graph.nodes["n"].n_params


POOL2D = [
    ("max_pool2d", "kernel: 2", nn.MaxPool2d(2)),
    ("max_pool2d", "kernel: 3, stride: 2, padding: 1", nn.MaxPool2d(3, 2, 1)),
    ("max_pool2d", "kernel: 2, ceil_mode: true", nn.MaxPool2d(2, ceil_mode=True)),
    ("max_pool2d", "kernel: [3, 2], stride: [2, 3], dilation: 2, ceil_mode: true",
     nn.MaxPool2d((3, 2), (2, 3), dilation=2, ceil_mode=True)),
    ("max_pool2d", "kernel: 3, stride: 4, padding: 1, ceil_mode: true", nn.MaxPool2d(3, 4, 1, ceil_mode=True)),
    ("avg_pool2d", "kernel: 2", nn.AvgPool2d(2)),
    ("avg_pool2d", "kernel: 3, stride: 2, padding: 1, ceil_mode: true, count_include_pad: false",
     nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False)),
    ("adaptive_avg_pool2d", "output_size: 1", nn.AdaptiveAvgPool2d(1)),
    ("adaptive_avg_pool2d", "output_size: [3, 4]", nn.AdaptiveAvgPool2d((3, 4))),
    ("adaptive_max_pool2d", "output_size: [2, 5]", nn.AdaptiveMaxPool2d((2, 5))),
]


@pytest.mark.parametrize("size", [(13, 13), (28, 28), (9, 14)])
@pytest.mark.parametrize("op, params, layer", POOL2D, ids=[f"{o}:{p}" for o, p, _ in POOL2D])
def test_pool2d_shape_matches_torch(diagnose, op, params, layer, size):
    out, n_params = infer_one(diagnose, ["batch", 5, *size], f"{{name: n, op: {op}, in: x, {params}}}")
    assert out.shape == ("batch",) + tuple(layer(torch.zeros(1, 5, *size)).shape[1:])
    assert n_params == 0


POOL1D = [
    ("max_pool1d", "kernel: 3", nn.MaxPool1d(3)),
    ("max_pool1d", "kernel: 2, stride: 3, ceil_mode: true", nn.MaxPool1d(2, 3, ceil_mode=True)),
    ("avg_pool1d", "kernel: 4, stride: 2, padding: 2", nn.AvgPool1d(4, 2, 2)),
    ("adaptive_avg_pool1d", "output_size: 7", nn.AdaptiveAvgPool1d(7)),
]


@pytest.mark.parametrize("length", [11, 20])
@pytest.mark.parametrize("op, params, layer", POOL1D, ids=[f"{o}:{p}" for o, p, _ in POOL1D])
def test_pool1d_shape_matches_torch(diagnose, op, params, layer, length):
    out, _ = infer_one(diagnose, ["batch", 4, length], f"{{name: n, op: {op}, in: x, {params}}}")
    assert out.shape == ("batch",) + tuple(layer(torch.zeros(2, 4, length)).shape[1:])


def test_stride_defaults_to_the_kernel(diagnose):
    out, _ = infer_one(diagnose, ["batch", 6, 28, 28], "{name: n, op: max_pool2d, in: x, kernel: 2}")
    assert out.shape == ("batch", 6, 14, 14)


def test_pooling_keeps_symbolic_batch_and_channels(diagnose):
    out, _ = infer_one(diagnose, ["batch", "c", "h", 8], "{name: n, op: avg_pool2d, in: x, kernel: 2}")
    assert out.shape[:2] == ("batch", "c") and "h" in str(out.shape[2]) and out.shape[3] == 4


@pytest.mark.parametrize("op, reduce", [("global_avg_pool", torch.mean), ("global_max_pool", torch.amax)])
@pytest.mark.parametrize("shape", [[2, 8, 5], [2, 8, 5, 6], [2, 8, 3, 4, 5]])
def test_global_pool_reduces_every_spatial_dim(diagnose, op, reduce, shape):
    out, _ = infer_one(diagnose, ["batch", *shape[1:]], f"{{name: n, op: {op}, in: x}}")
    dims = tuple(range(2, len(shape)))
    assert out.shape == ("batch",) + tuple(reduce(torch.zeros(*shape), dim=dims).shape[1:])
    out, _ = infer_one(diagnose, ["batch", *shape[1:]], f"{{name: n, op: {op}, in: x, keepdim: true}}")
    assert out.shape == ("batch",) + tuple(reduce(torch.zeros(*shape), dim=dims, keepdim=True).shape[1:])


# ----- errors ------------------------------------------------------------
def expect_error(diagnose, shape, node, at, fragment, dtype="float32"):
    """Exactly one error, containing ``fragment``, at the value of parameter ``at`` (None: at the node)."""
    text = spec_text({"x": (shape, dtype)}, [node])
    _, errors = diagnose(text)
    assert len(errors) == 1, errors
    line, col, message, _ = errors[0]
    assert fragment in message, message
    assert (line, col) == (node_line(), value_col(text, node_line(), at))


def test_padding_over_half_the_kernel_is_an_error_like_torch(diagnose):
    with pytest.raises(RuntimeError, match="pad should be"):
        nn.MaxPool2d(3, padding=2)(torch.zeros(1, 1, 8, 8))
    expect_error(diagnose, ["batch", 3, 8, 8], "{name: n, op: max_pool2d, in: x, kernel: 3, padding: 2}",
                 "padding", "padding 2 is more than half the kernel size 3")


def test_window_larger_than_the_input_names_size_kernel_and_stride(diagnose):
    expect_error(diagnose, ["batch", 3, 8, 2], "{name: n, op: max_pool2d, in: x, kernel: 3}",
                 "kernel", "output width would be 0: input size 2, kernel 3, stride 3")


def test_pool2d_on_a_rank_3_input_is_an_error_at_the_node(diagnose):
    expect_error(diagnose, ["batch", 3, 8], "{name: n, op: avg_pool2d, in: x, kernel: 2}",
                 None, "avg_pool2d expects a rank-4 input [batch, channels, height, width], got rank 3 [batch, 3, 8]")


def test_kernel_list_of_wrong_length_points_at_kernel(diagnose):
    expect_error(diagnose, ["batch", 3, 8], "{name: n, op: max_pool1d, in: x, kernel: [2, 2]}",
                 "kernel", "kernel needs 1 values (one per spatial dim), got 2")


def test_adaptive_output_size_of_wrong_length_points_at_output_size(diagnose):
    expect_error(diagnose, ["batch", 3, 8, 8], "{name: n, op: adaptive_avg_pool2d, in: x, output_size: [1, 1, 1]}",
                 "output_size", "output_size needs 2 values (one per spatial dim), got 3")


def test_global_pool_needs_a_spatial_dim(diagnose):
    expect_error(diagnose, ["batch", 3], "{name: n, op: global_avg_pool, in: x}",
                 None, "global_avg_pool expects [batch, channels, *spatial] (rank 3 or more), got rank 2 [batch, 3]")


def test_pooling_an_integer_tensor_is_an_error(diagnose):
    expect_error(diagnose, ["batch", 3, 8, 8], "{name: n, op: max_pool2d, in: x, kernel: 2}",
                 None, "input must be a floating-point tensor, got int64", dtype="int64")
