"""conv family: conv1d/conv2d/conv_transpose2d/upsample/patch_embed shapes and parameter counts.

Oracles: torch.nn layers run on real tensors (output shapes, parameter counts), the seed's
worked count (64 3×3 filters on RGB = 1,792) and ViT-B/16's published patch projection.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from _onenode import node_line, spec_text, value_col


def infer_one(diagnose, shape, node, dtype="float32"):
    graph, errors = diagnose(spec_text({"x": (shape, dtype)}, [node]))
    assert not errors, errors
    n = graph.nodes["n"]
    return n.outputs["out"], n.n_params


def torch_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


CONV2D_CASES = [
    # (in_channels, H, W, yaml params, torch kwargs)
    (3, 32, 32, "out: 16, kernel: 3", dict(out_channels=16, kernel_size=3)),
    (3, 32, 30, "out: 8, kernel: [3, 5], stride: [2, 1], padding: [1, 2]",
     dict(out_channels=8, kernel_size=(3, 5), stride=(2, 1), padding=(1, 2))),
    (8, 17, 17, "out: 12, kernel: 3, stride: 2, dilation: 2, groups: 4, bias: false",
     dict(out_channels=12, kernel_size=3, stride=2, dilation=2, groups=4, bias=False)),
    (4, 9, 10, "out: 6, kernel: 4, padding: same", dict(out_channels=6, kernel_size=4, padding="same")),
    (4, 9, 10, "out: 6, kernel: 3, dilation: 3, padding: same", dict(out_channels=6, kernel_size=3, dilation=3, padding="same")),
    (4, 9, 10, "out: 6, kernel: 3, padding: valid", dict(out_channels=6, kernel_size=3, padding="valid")),
    (16, 7, 7, "out: 16, kernel: 3, padding: 1, groups: 16", dict(out_channels=16, kernel_size=3, padding=1, groups=16)),
    (3, 224, 224, "out: 64, kernel: 7, stride: 2, padding: 3, bias: false",
     dict(out_channels=64, kernel_size=7, stride=2, padding=3, bias=False)),
]


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("c, h, w, params, kwargs", CONV2D_CASES)
def test_conv2d_shape_and_count_match_torch(diagnose, c, h, w, params, kwargs):
    out, n_params = infer_one(diagnose, ["batch", c, h, w], f"{{name: n, op: conv2d, in: x, {params}}}")
    layer = nn.Conv2d(c, **kwargs)
    expected = layer(torch.zeros(2, c, h, w)).shape
    assert out.shape == ("batch",) + tuple(expected[1:])
    assert n_params == torch_params(layer)


@pytest.mark.parametrize("params, kwargs", [
    ("out: 32, kernel: 5", dict(out_channels=32, kernel_size=5)),
    ("out: 32, kernel: 3, stride: 3, padding: 2, dilation: 2", dict(out_channels=32, kernel_size=3, stride=3, padding=2, dilation=2)),
    ("out: 10, kernel: 2, padding: same, groups: 2", dict(out_channels=10, kernel_size=2, padding="same", groups=2)),
])
def test_conv1d_shape_and_count_match_torch(diagnose, params, kwargs):
    out, n_params = infer_one(diagnose, ["batch", 6, 50], f"{{name: n, op: conv1d, in: x, {params}}}")
    layer = nn.Conv1d(6, **kwargs)
    assert out.shape == ("batch",) + tuple(layer(torch.zeros(1, 6, 50)).shape[1:])
    assert n_params == torch_params(layer)


def test_conv2d_count_matches_the_seed_worked_example(diagnose):
    # seed 002, "The Convolution Operation": 64 filters 3x3 on RGB = 64*3*3*3 + 64 = 1,792
    _, n_params = infer_one(diagnose, ["batch", 3, 32, 32], "{name: n, op: conv2d, in: x, out: 64, kernel: 3}")
    assert n_params == 1792


def test_conv2d_keeps_symbolic_spatial_dims_symbolic(diagnose):
    out, _ = infer_one(diagnose, ["batch", 3, "h", "w"], "{name: n, op: conv2d, in: x, out: 8, kernel: 3, padding: same}")
    assert out.shape == ("batch", 8, "h", "w")
    out, _ = infer_one(diagnose, ["batch", 3, "h", 32], "{name: n, op: conv2d, in: x, out: 8, kernel: 3, stride: 2}")
    assert out.shape[:2] == ("batch", 8) and isinstance(out.shape[2], str) and "h" in out.shape[2]
    assert out.shape[3] == 15


def test_conv2d_accepts_a_matching_in_channels(diagnose):
    out, _ = infer_one(diagnose, ["batch", 3, 8, 8], "{name: n, op: conv2d, in: x, in_channels: 3, out: 4, kernel: 1}")
    assert out.shape == ("batch", 4, 8, 8)


@pytest.mark.parametrize("params, kwargs", [
    ("out: 16, kernel: 2, stride: 2", dict(out_channels=16, kernel_size=2, stride=2)),
    ("out: 8, kernel: 3, stride: 2, padding: 1, output_padding: 1",
     dict(out_channels=8, kernel_size=3, stride=2, padding=1, output_padding=1)),
    ("out: 12, kernel: [3, 4], stride: [1, 2], groups: 2, bias: false, dilation: 2",
     dict(out_channels=12, kernel_size=(3, 4), stride=(1, 2), groups=2, bias=False, dilation=2)),
])
def test_conv_transpose2d_shape_and_count_match_torch(diagnose, params, kwargs):
    out, n_params = infer_one(diagnose, ["batch", 4, 7, 9], f"{{name: n, op: conv_transpose2d, in: x, {params}}}")
    layer = nn.ConvTranspose2d(4, **kwargs)
    assert out.shape == ("batch",) + tuple(layer(torch.zeros(1, 4, 7, 9)).shape[1:])
    assert n_params == torch_params(layer)


@pytest.mark.parametrize("shape, params, kwargs", [
    ([2, 3, 7, 9], "scale_factor: 2", dict(scale_factor=2, mode="nearest")),
    ([2, 3, 7, 9], "scale_factor: 1.5, mode: bilinear", dict(scale_factor=1.5, mode="bilinear")),
    ([2, 3, 7, 9], "scale_factor: [2, 3]", dict(scale_factor=(2, 3), mode="nearest")),
    ([2, 3, 7, 9], "size: [5, 20], mode: bilinear, align_corners: true", dict(size=(5, 20), mode="bilinear", align_corners=True)),
    ([2, 3, 11], "scale_factor: 0.5", dict(scale_factor=0.5, mode="nearest")),
])
def test_upsample_shape_matches_torch(diagnose, shape, params, kwargs):
    out, n_params = infer_one(diagnose, shape, f"{{name: n, op: upsample, in: x, {params}}}")
    assert out.shape == tuple(nn.Upsample(**kwargs)(torch.zeros(*shape)).shape)
    assert n_params == 0


def test_upsample_symbolic_dims_scale_by_integer_factors(diagnose):
    out, _ = infer_one(diagnose, ["batch", 3, "h", "w"], "{name: n, op: upsample, in: x, scale_factor: 2}")
    assert out.shape == ("batch", 3, "h*2", "w*2")


def test_patch_embed_vit_b16_tokens_and_published_count(diagnose):
    # ViT-B/16 on 224x224: 14*14 = 196 patches, +1 [CLS]; proj 768*3*16*16 + 768 = 590,592, cls token 768
    out, n_params = infer_one(diagnose, ["batch", 3, 224, 224],
                              "{name: n, op: patch_embed, in: x, patch: 16, dim: 768, cls_token: true}")
    assert out.shape == ("batch", 197, 768)
    assert n_params == 590_592 + 768
    out, n_params = infer_one(diagnose, ["batch", 3, 224, 224], "{name: n, op: patch_embed, in: x, patch: 16, dim: 768}")
    assert out.shape == ("batch", 196, 768) and n_params == 590_592


def test_patch_embed_matches_a_torch_conv_flatten(diagnose):
    out, n_params = infer_one(diagnose, ["batch", 4, 32, 48], "{name: n, op: patch_embed, in: x, patch: [8, 16], dim: 20}")
    proj = nn.Conv2d(4, 20, kernel_size=(8, 16), stride=(8, 16))
    tokens = proj(torch.zeros(1, 4, 32, 48)).flatten(2).transpose(1, 2)
    assert out.shape == ("batch",) + tuple(tokens.shape[1:])
    assert n_params == torch_params(proj)


# ----- errors: message and line:col ---------------------------------------
def expect_error(diagnose, shape, node, at, fragment, dtype="float32"):
    """Exactly one error, containing ``fragment``, at the value of parameter ``at`` (None: at the node)."""
    text = spec_text({"x": (shape, dtype)}, [node])
    _, errors = diagnose(text)
    assert len(errors) == 1, errors
    line, col, message, _ = errors[0]
    assert fragment in message, message
    assert (line, col) == (node_line(), value_col(text, node_line(), at))
    return message


def test_in_channels_mismatch_points_at_in_channels(diagnose):
    msg = expect_error(diagnose, ["batch", 3, 32, 32], "{name: n, op: conv2d, in: x, out: 8, kernel: 3, in_channels: 4}",
                       "in_channels", "in_channels is 4 but the input [batch, 3, 32, 32] has 3 channels")
    assert msg.startswith("node 'n' (conv2d):")


def test_groups_not_dividing_input_channels_points_at_groups(diagnose):
    expect_error(diagnose, ["batch", 6, 8, 8], "{name: n, op: conv2d, in: x, out: 8, kernel: 3, groups: 4}",
                 "groups", "groups 4 must divide the input channels: 6 is not divisible by 4")


def test_groups_not_dividing_output_channels_points_at_groups(diagnose):
    expect_error(diagnose, ["batch", 6, 8, 8], "{name: n, op: conv2d, in: x, out: 9, kernel: 3, groups: 2}",
                 "groups", "groups 2 must divide the output channels: 9 is not divisible by 2")


def test_kernel_list_of_wrong_length_points_at_kernel(diagnose):
    expect_error(diagnose, ["batch", 3, 8, 8], "{name: n, op: conv2d, in: x, out: 8, kernel: [3, 3, 3]}",
                 "kernel", "kernel needs 2 values (one per spatial dim), got 3")


def test_conv2d_on_a_rank_3_input_is_an_error_at_the_node(diagnose):
    expect_error(diagnose, ["batch", 3, 32], "{name: n, op: conv2d, in: x, out: 8, kernel: 3}",
                 None, "conv2d expects a rank-4 input [batch, channels, height, width], got rank 3 [batch, 3, 32]")


def test_conv_on_an_integer_input_is_an_error_at_the_node(diagnose):
    expect_error(diagnose, ["batch", 1, 28, 28], "{name: n, op: conv2d, in: x, out: 8, kernel: 3}",
                 None, "input must be a floating-point tensor, got int64", dtype="int64")


def test_empty_output_names_input_size_kernel_and_stride(diagnose):
    expect_error(diagnose, ["batch", 3, 4, 32], "{name: n, op: conv2d, in: x, out: 8, kernel: 5, stride: 2}",
                 "kernel", "output height would be 0: input size 4, kernel 5, stride 2")


def test_same_padding_with_stride_is_an_error_at_padding(diagnose):
    expect_error(diagnose, ["batch", 3, 8, 8], "{name: n, op: conv2d, in: x, out: 8, kernel: 3, stride: 2, padding: same}",
                 "padding", 'padding "same" is not supported for strided convolutions')


def test_unknown_padding_word_is_an_error_at_padding(diagnose):
    expect_error(diagnose, ["batch", 3, 8, 8], "{name: n, op: conv2d, in: x, out: 8, kernel: 3, padding: full}",
                 "padding", "parameter 'padding' of node 'n' (conv2d): expected a non-negative integer")


def test_symbolic_channel_dim_is_an_error(diagnose):
    expect_error(diagnose, ["batch", "c", 8, 8], "{name: n, op: conv2d, in: x, out: 8, kernel: 3}",
                 None, "the channel dim (dim 1) of the input [batch, c, 8, 8] must be a concrete size")


def test_conv_transpose_output_padding_not_below_stride_is_an_error(diagnose):
    expect_error(diagnose, ["batch", 3, 8, 8], "{name: n, op: conv_transpose2d, in: x, out: 8, kernel: 3, output_padding: 1}",
                 "output_padding", "output_padding 1 (height) must be smaller than the stride (1) or the dilation (1)")


def test_upsample_needs_exactly_one_of_size_and_scale(diagnose):
    expect_error(diagnose, ["batch", 3, 8, 8], "{name: n, op: upsample, in: x, scale_factor: 2, size: 16}",
                 "size", "give exactly one of scale_factor and size")
    expect_error(diagnose, ["batch", 3, 8, 8], "{name: n, op: upsample, in: x}",
                 None, "give exactly one of scale_factor and size")


def test_bilinear_upsample_of_a_1d_input_is_an_error_at_mode(diagnose):
    expect_error(diagnose, ["batch", 3, 8], "{name: n, op: upsample, in: x, scale_factor: 2, mode: bilinear}",
                 "mode", "bilinear upsampling needs a rank-4 input")


def test_patch_size_not_dividing_the_image_points_at_patch(diagnose):
    expect_error(diagnose, ["batch", 3, 225, 224], "{name: n, op: patch_embed, in: x, patch: 16, dim: 64}",
                 "patch", "input height 225 is not divisible by the patch size 16")
