"""Selective SSM (Mamba) block: shapes, the reference parameter layout, errors.

Oracle: a torch module with exactly the parameters of mamba_ssm's ``Mamba.__init__``
(in_proj, depthwise conv1d, x_proj, dt_proj, A_log, D, out_proj), built here.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn


class MambaParams(nn.Module):
    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2, dt_rank: int | None = None,
                 conv_bias: bool = True, bias: bool = False):
        super().__init__()
        d_inner = expand * d_model
        dt_rank = dt_rank or math.ceil(d_model / 16)
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=bias)
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1, bias=conv_bias)
        self.x_proj = nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, d_inner, bias=True)
        self.A_log = nn.Parameter(torch.empty(d_inner, d_state))
        self.D = nn.Parameter(torch.ones(d_inner))
        self.out_proj = nn.Linear(d_inner, d_model, bias=bias)


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def spec(node: str, shape: str = "[batch, seq, 32]", dtype: str = "float32") -> str:
    return (f"nngraph: 1\nname: t\ninputs:\n  x: {{shape: {shape}, dtype: {dtype}}}\n"
            f"graph:\n  - {node}\noutputs: [m]\n")


def one(diagnose, text: str):
    graph, errors = diagnose(text)
    assert errors == [], errors
    return graph.nodes["m"]


def test_mamba_keeps_the_sequence_shape_and_counts_like_the_reference_block(diagnose):
    node = one(diagnose, spec("{name: m, op: mamba, in: x}"))
    assert node.out.shape == ("batch", "seq", 32)
    assert node.n_params == count(MambaParams(32))


def test_mamba_130m_layer_dims_give_3_770_880_parameters(diagnose):
    # mamba-130m: d_model 768, d_state 16, d_conv 4, expand 2, dt_rank ceil(768/16) = 48
    node = one(diagnose, spec("{name: m, op: mamba, in: x}", "[batch, seq, 768]"))
    assert node.n_params == count(MambaParams(768)) == 3_770_880


@pytest.mark.parametrize("params,oracle", [
    ("d_state: 8, d_conv: 3, expand: 1", dict(d_state=8, d_conv=3, expand=1)),
    ("dt_rank: 5", dict(dt_rank=5)),
    ("bias: true, conv_bias: false", dict(bias=True, conv_bias=False)),
    ("scan: chunked, chunk_size: 16", dict()),
])
def test_mamba_options_match_the_reference_layout(diagnose, params, oracle):
    node = one(diagnose, spec(f"{{name: m, op: mamba, in: x, {params}}}"))
    assert node.n_params == count(MambaParams(32, **oracle))


def test_default_dt_rank_is_ceil_of_d_model_over_16(diagnose):
    node = one(diagnose, spec("{name: m, op: mamba, in: x}", "[batch, seq, 40]"))
    assert node.n_params == count(MambaParams(40, dt_rank=3))


def test_mamba_needs_batch_seq_features(diagnose):
    _, errors = diagnose(spec("{name: m, op: mamba, in: x}", "[batch, 32]"))
    assert [(e[0], e[1], e[2]) for e in errors] == [(6, 5, "node 'm' (mamba): x must be [batch, seq, d_model], got [batch, 32]")]


def test_mamba_needs_float_input(diagnose):
    _, errors = diagnose(spec("{name: m, op: mamba, in: x}", dtype="int64"))
    assert [(e[0], e[1], e[2]) for e in errors] == [(6, 5, "node 'm' (mamba): input must be a floating-point tensor, got int64")]


def test_chunk_size_without_chunked_scan_is_an_error_at_chunk_size(diagnose):
    text = spec("{name: m, op: mamba, in: x, chunk_size: 32}")
    _, errors = diagnose(text)
    col = text.splitlines()[5].index("32}") + 1
    assert [(e[0], e[1], e[2]) for e in errors] == [(6, col, "node 'm' (mamba): chunk_size only applies to scan: chunked")]
