"""norm family: batch_norm, layer_norm, rms_norm, group_norm, dyt — shapes and torch-exact parameter counts.

Oracles: torch.nn.BatchNorm1d/2d, LayerNorm, RMSNorm, GroupNorm (their parameters(), which
exclude the running-statistics buffers) and the DyT reference module written out below.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from _onenode import node_line, spec_text, value_col


def infer_one(diagnose, shape, node, dtype="float32"):
    graph, errors = diagnose(spec_text({"x": (shape, dtype)}, [node]))
    assert not errors, errors
    return graph.nodes["n"].outputs["out"], graph.nodes["n"].n_params


def torch_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("shape, layer", [
    (["batch", 32], nn.BatchNorm1d(32)),
    (["batch", 32, "seq"], nn.BatchNorm1d(32)),
    (["batch", 64, 56, 56], nn.BatchNorm2d(64)),
])
def test_batch_norm_counts_weight_and_bias_but_not_running_stats(diagnose, shape, layer):
    out, n_params = infer_one(diagnose, shape, "{name: n, op: batch_norm, in: x}")
    assert out.shape == tuple(shape)
    assert n_params == torch_params(layer) == 2 * shape[1]
    assert sum(b.numel() for b in layer.buffers()) > 0  # buffers exist in torch but are not parameters


def test_batch_norm_without_affine_has_no_parameters(diagnose):
    _, n_params = infer_one(diagnose, ["batch", 16, 8, 8], "{name: n, op: batch_norm, in: x, affine: false}")
    assert n_params == torch_params(nn.BatchNorm2d(16, affine=False)) == 0


@pytest.mark.parametrize("params, layer", [
    ("", nn.LayerNorm(48)),
    ("shape: 48", nn.LayerNorm(48)),
    ("shape: [10, 48]", nn.LayerNorm([10, 48])),
    ("bias: false", nn.LayerNorm(48, bias=False)),
    ("elementwise_affine: false", nn.LayerNorm(48, elementwise_affine=False)),
])
def test_layer_norm_count_matches_torch(diagnose, params, layer):
    out, n_params = infer_one(diagnose, ["batch", 10, 48], f"{{name: n, op: layer_norm, in: x, {params}}}".replace(", }", "}"))
    assert out.shape == ("batch", 10, 48)
    assert n_params == torch_params(layer)


@pytest.mark.parametrize("params, layer", [
    ("", nn.RMSNorm(4096)),
    ("shape: [3, 4096], eps: 1.0e-5", nn.RMSNorm([3, 4096], eps=1e-5)),
    ("elementwise_affine: false", nn.RMSNorm(4096, elementwise_affine=False)),
])
def test_rms_norm_has_weight_only(diagnose, params, layer):
    out, n_params = infer_one(diagnose, ["batch", 3, 4096], f"{{name: n, op: rms_norm, in: x, {params}}}".replace(", }", "}"))
    assert out.shape == ("batch", 3, 4096)
    assert n_params == torch_params(layer)


def test_layer_norm_accepts_symbolic_leading_dims(diagnose):
    out, n_params = infer_one(diagnose, ["batch", "seq", 768], "{name: n, op: layer_norm, in: x}")
    assert out.shape == ("batch", "seq", 768) and n_params == 2 * 768


@pytest.mark.parametrize("shape, groups", [(["batch", 64, 16, 16], 32), (["batch", 12, 7], 3), (["batch", 6], 6)])
def test_group_norm_count_matches_torch(diagnose, shape, groups):
    out, n_params = infer_one(diagnose, shape, f"{{name: n, op: group_norm, in: x, groups: {groups}}}")
    assert out.shape == tuple(shape)
    assert n_params == torch_params(nn.GroupNorm(groups, shape[1]))


class DyT(nn.Module):
    """Dynamic Tanh as published (Zhu et al. 2025): alpha scalar, weight and bias per channel."""

    def __init__(self, c: int, alpha_init: float = 0.5):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1) * alpha_init)
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))


def test_dyt_counts_alpha_weight_and_bias(diagnose):
    out, n_params = infer_one(diagnose, ["batch", "seq", 384], "{name: n, op: dyt, in: x}")
    assert out.shape == ("batch", "seq", 384)
    assert n_params == torch_params(DyT(384)) == 1 + 2 * 384


# ----- errors ------------------------------------------------------------
def expect_error(diagnose, shape, node, at, fragment, dtype="float32"):
    """Exactly one error, containing ``fragment``, at the value of parameter ``at`` (None: at the node)."""
    text = spec_text({"x": (shape, dtype)}, [node])
    _, errors = diagnose(text)
    assert len(errors) == 1, errors
    line, col, message, _ = errors[0]
    assert fragment in message, message
    assert (line, col) == (node_line(), value_col(text, node_line(), at))


def test_group_norm_groups_not_dividing_channels_points_at_groups(diagnose):
    with pytest.raises(ValueError):
        nn.GroupNorm(5, 64)
    expect_error(diagnose, ["batch", 64, 8, 8], "{name: n, op: group_norm, in: x, groups: 5}",
                 "groups", "groups 5 must divide the channels: 64 is not divisible by 5")


def test_layer_norm_shape_not_matching_trailing_dims_points_at_shape(diagnose):
    expect_error(diagnose, ["batch", 10, 48], "{name: n, op: layer_norm, in: x, shape: [12, 48]}",
                 "shape", "shape [12, 48] must equal the trailing dims of the input [batch, 10, 48], got [10, 48]")


def test_rms_norm_shape_longer_than_the_input_points_at_shape(diagnose):
    expect_error(diagnose, ["batch", 8], "{name: n, op: rms_norm, in: x, shape: [2, 2, 8]}",
                 "shape", "shape [2, 2, 8] has 3 dims but the input [batch, 8] has only 2")


def test_batch_norm_on_rank_5_is_an_error_at_the_node(diagnose):
    expect_error(diagnose, ["batch", 3, 4, 4, 4], "{name: n, op: batch_norm, in: x}",
                 None, "input must have rank 2 or 3 or 4, got rank 5 [batch, 3, 4, 4, 4]")


def test_batch_norm_needs_a_concrete_channel_dim(diagnose):
    expect_error(diagnose, ["batch", "c", 4], "{name: n, op: batch_norm, in: x}",
                 None, "the normalized dim (dim 1) of [batch, c, 4] must be a concrete size, got 'c'")


def test_layer_norm_of_an_integer_tensor_is_an_error(diagnose):
    expect_error(diagnose, ["batch", 8], "{name: n, op: layer_norm, in: x}",
                 None, "input must be a floating-point tensor, got int64", dtype="int64")


def test_dyt_needs_a_concrete_last_dim(diagnose):
    expect_error(diagnose, ["batch", "d"], "{name: n, op: dyt, in: x}",
                 None, "the normalized dim (dim 1) of [batch, d] must be a concrete size, got 'd'")


def test_rms_norm_offset_needs_a_learned_scale(diagnose):
    _, errors = diagnose(spec_text({"x": (["batch", 8], "float32")},
                                   ["{name: n, op: rms_norm, in: x, offset: 1, elementwise_affine: false}"]))
    assert len(errors) == 1 and "offset adds to the learned scale" in errors[0][2]


def test_layer_norm_offset_needs_a_learned_scale(diagnose):
    _, errors = diagnose(spec_text({"x": (["batch", 8], "float32")},
                                   ["{name: n, op: layer_norm, in: x, offset: 1, elementwise_affine: false}"]))
    assert len(errors) == 1 and "offset adds to the learned scale" in errors[0][2]


def test_layer_scale_counts_one_gamma_per_channel_and_checks_dim(diagnose):
    graph, errors = diagnose(spec_text({"x": (["batch", 6, 4, 4], "float32")},
                                       ["{name: n, op: layer_scale, in: x, dim: 1}"]))
    assert not errors and graph.total_params == 6
    expect_error(diagnose, ["batch", 6], "{name: n, op: layer_scale, in: x, dim: 2}",
                 "dim", "dim 2 is out of range for an input of rank 2: expected -2..1")
    expect_error(diagnose, ["batch", "d"], "{name: n, op: layer_scale, in: x}",
                 None, "the normalized dim (dim 1) of [batch, d] must be a concrete size, got 'd'")
