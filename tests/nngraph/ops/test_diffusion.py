"""Diffusion ops: forward noising, timestep embedding, the U-Net residual block.

Oracles: torch modules with the parameters of diffusers' ``ResnetBlock2D`` and ``TimestepEmbedding``
(GroupNorm/Conv2d/Linear built here; diffusers is not installed).
"""

from __future__ import annotations

import pytest
from torch import nn

INPUTS = """\
nngraph: 1
name: t
inputs:
  x: {shape: [batch, 64, 8, 8], dtype: float32}
  t: {shape: [batch], dtype: int64}
  noise: {shape: [batch, 64, 8, 8], dtype: float32}
  temb: {shape: [batch, 128], dtype: float32}
graph:
"""


def spec(*nodes: str, outputs: str = "[n]") -> str:
    return INPUTS + "".join(f"  - {n}\n" for n in nodes) + f"outputs: {outputs}\n"


def pos(text: str, token: str) -> tuple[int, int]:
    for i, line in enumerate(text.splitlines()):
        if token in line:
            return i + 1, line.index(token) + 1
    raise AssertionError(token)


def count(*modules: nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


class ResnetBlock2D(nn.Module):
    """The parameters of diffusers' ResnetBlock2D (conv_shortcut 1x1 when channels change)."""

    def __init__(self, c: int, out: int, groups: int, temb: int | None, scale_shift: bool = False):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c)
        self.conv1 = nn.Conv2d(c, out, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, 2 * out if scale_shift else out) if temb else None
        self.norm2 = nn.GroupNorm(groups, out)
        self.conv2 = nn.Conv2d(out, out, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(c, out, 1) if c != out else None


def one(diagnose, text: str):
    graph, errors = diagnose(text)
    assert errors == [], errors
    return graph.nodes["n"]


OTHERS = "{n: n, a: x, b: t, c: noise, d: temb}"


# ----- res_block -------------------------------------------------------------
@pytest.mark.parametrize("params,out,oracle", [
    ("groups: 32", 64, dict(out=64, groups=32, temb=128)),
    ("out: 128, groups: 32", 128, dict(out=128, groups=32, temb=128)),
    ("out: 32, groups: 8, temb_mode: scale_shift", 32, dict(out=32, groups=8, temb=128, scale_shift=True)),
])
def test_res_block_counts_like_diffusers_resnet_block(diagnose, params, out, oracle):
    node = one(diagnose, spec(f"{{name: n, op: res_block, in: {{x: x, temb: temb}}, {params}}}", outputs=OTHERS))
    assert node.out.shape == ("batch", out, 8, 8)
    assert node.n_params == count(ResnetBlock2D(64, **oracle))


def test_res_block_without_temb_has_no_time_projection(diagnose):
    node = one(diagnose, spec("{name: n, op: res_block, in: x, out: 96, groups: 16}", outputs=OTHERS))
    assert node.n_params == count(ResnetBlock2D(64, 96, 16, None))


def test_res_block_groups_must_divide_the_input_channels(diagnose):
    text = spec("{name: n, op: res_block, in: x, groups: 24}", outputs=OTHERS)
    _, errors = diagnose(text)
    assert len(errors) == 1
    line, col, message, hint = errors[0]
    assert (line, col) == pos(text, "24}")
    assert message == "node 'n' (res_block): groups must divide the input channels: 64 is not divisible by 24"
    assert hint == "choose groups dividing both 64 and 64"


def test_res_block_groups_must_divide_the_output_channels(diagnose):
    text = spec("{name: n, op: res_block, in: x, out: 48, groups: 32}", outputs=OTHERS)
    _, errors = diagnose(text)
    assert [(e[0], e[1], e[2]) for e in errors] == [
        (pos(text, "groups: 32}")[0], pos(text, "groups: 32}")[1] + 8,
         "node 'n' (res_block): groups must divide the output channels: 48 is not divisible by 32")]


def test_res_block_default_groups_32_is_checked_at_the_node(diagnose):
    text = spec("{name: n, op: res_block, in: x, out: 40}", outputs=OTHERS)
    _, errors = diagnose(text)
    assert [(e[0], e[1], e[2]) for e in errors] == [
        (*pos(text, "{name: n"), "node 'n' (res_block): groups must divide the output channels: 40 is not divisible by 32")]


def test_res_block_temb_must_be_batch_by_width(diagnose):
    text = spec("{name: n, op: res_block, in: {x: x, temb: noise}}", outputs=OTHERS)
    _, errors = diagnose(text)
    assert [(e[0], e[1], e[2]) for e in errors] == [
        (*pos(text, "noise}"), "node 'n' (res_block): temb must be [batch, D_t], got [batch, 64, 8, 8]")]


def test_scale_shift_needs_temb(diagnose):
    text = spec("{name: n, op: res_block, in: x, temb_mode: scale_shift}", outputs=OTHERS)
    _, errors = diagnose(text)
    assert [(e[0], e[1], e[2]) for e in errors] == [
        (*pos(text, "scale_shift}"), "node 'n' (res_block): temb_mode scale_shift needs a temb input")]


# ----- timestep_embedding --------------------------------------------------
def test_sinusoidal_timestep_embedding_has_no_parameters(diagnose):
    node = one(diagnose, spec("{name: n, op: timestep_embedding, in: t, dim: 64}", outputs=OTHERS))
    assert node.out.shape == ("batch", 64) and node.out.dtype == "float32"
    assert node.n_params == 0


def test_timestep_embedding_mlp_counts_like_diffusers_timestep_embedding(diagnose):
    node = one(diagnose, spec("{name: n, op: timestep_embedding, in: t, dim: 64, out: 256}", outputs=OTHERS))
    assert node.out.shape == ("batch", 256)
    assert node.n_params == count(nn.Linear(64, 256), nn.Linear(256, 256))


def test_timestep_embedding_needs_one_step_per_sample(diagnose):
    text = spec("{name: n, op: timestep_embedding, in: temb, dim: 64}", outputs=OTHERS)
    _, errors = diagnose(text)
    assert [(e[0], e[1], e[2]) for e in errors] == [
        (*pos(text, "temb, dim"), "node 'n' (timestep_embedding): t must be [batch] (one step per sample), got [batch, 128]")]


# ----- diffusion_noise -------------------------------------------------------
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_diffusion_noise_returns_x_t_shaped_like_x0(diagnose, schedule):
    node = one(diagnose, spec(f"{{name: n, op: diffusion_noise, in: [x, t, noise], schedule: {schedule}, steps: 1000}}",
                              outputs="{n: n, d: temb}"))
    assert node.out.shape == ("batch", 64, 8, 8)
    assert node.n_params == 0


def test_float_t_is_an_error_at_the_t_input(diagnose):
    text = spec("{name: tf, op: cast, in: t, dtype: float32}",
                "{name: n, op: diffusion_noise, in: [x, tf, noise]}", outputs="{n: n, d: temb}")
    _, errors = diagnose(text)
    assert len(errors) == 1
    line, col, message, hint = errors[0]
    assert (line, col) == pos(text, "tf, noise")
    assert message == "node 'n' (diffusion_noise): t must be an integer tensor of step indices, got float32"
    assert "int64" in hint


def test_t_must_be_a_vector_with_one_step_per_sample(diagnose):
    text = spec("{name: n, op: diffusion_noise, in: [x, t, noise]}", outputs="{n: n, d: temb}").replace(
        "t: {shape: [batch]", "t: {shape: [batch, 1]")
    _, errors = diagnose(text)
    assert [(e[0], e[1], e[2]) for e in errors] == [
        (*pos(text, "t, noise"), "node 'n' (diffusion_noise): t must be [batch] (one step per sample), got [batch, 1]")]


def test_t_batch_must_match_x0(diagnose):
    text = spec("{name: n, op: diffusion_noise, in: [x, t, noise]}", outputs="{n: n, d: temb}").replace(
        "t: {shape: [batch]", "t: {shape: [7]").replace("[batch, 64, 8, 8]", "[4, 64, 8, 8]")
    _, errors = diagnose(text)
    assert [(e[0], e[1], e[2]) for e in errors] == [
        (*pos(text, "t, noise"), "node 'n' (diffusion_noise): t must have one step per sample: expected [4], got [7]")]


def test_noise_must_match_x0(diagnose):
    text = spec("{name: p, op: avg_pool2d, in: noise, kernel: 2}",
                "{name: n, op: diffusion_noise, in: [x, t, p]}", outputs="{n: n, d: temb}")
    _, errors = diagnose(text)
    assert [(e[0], e[1], e[2]) for e in errors] == [
        (*pos(text, "p]}"), "node 'n' (diffusion_noise): noise must have the shape of x0: expected [batch, 64, 8, 8], "
                            "got [batch, 64, 4, 4]")]


def test_linear_schedule_betas_must_increase(diagnose):
    text = spec("{name: n, op: diffusion_noise, in: [x, t, noise], beta_start: 0.02, beta_end: 0.0001}",
                outputs="{n: n, d: temb}")
    _, errors = diagnose(text)
    assert [(e[0], e[1], e[2]) for e in errors] == [
        (*pos(text, "0.02,"), "node 'n' (diffusion_noise): beta_start must be below beta_end: expected < 0.0001, got 0.02")]
