"""position_embedding: learned and sinusoidal absolute positions — shapes, counts, formula, errors.

Oracles: torch.nn.Embedding(max_len, dim) for the learned table; the seed's sinusoid
PE(pos, 2i) = sin(pos/10000^(2i/d)), PE(pos, 2i+1) = cos(...) (seed 002, "Sinusoidal Encodings"),
evaluated by hand and by the usual torch construction.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nngraph.ops.position import sinusoidal
from _onenode import one_node, single_error

X = {"x": (["batch", "seq", 768], "float32")}


def one(diagnose, node: str, inputs: dict | None = None):
    return one_node(diagnose, node, inputs or X)


def error_at(diagnose, node: str, token: str, inputs: dict | None = None):
    return single_error(diagnose, node, token, inputs or X)


def test_learned_table_counts_max_len_times_dim(diagnose):
    n = one(diagnose, "{name: n, op: position_embedding, in: x, type: learned, max_len: 1024}")
    assert n.out.shape == ("batch", "seq", 768)
    assert n.n_params == sum(p.numel() for p in nn.Embedding(1024, 768).parameters()) == 786_432


def test_sinusoidal_has_no_parameters(diagnose):
    n = one(diagnose, "{name: n, op: position_embedding, in: x, type: sinusoidal}")
    assert n.n_params == 0 and n.out.shape == ("batch", "seq", 768)


def test_explicit_positions_input(diagnose):
    inputs = {**X, "pos": (["batch", "seq"], "int64")}
    n = one(diagnose, "{name: n, op: position_embedding, in: {x: x, positions: pos}, type: learned, max_len: 16}", inputs)
    assert n.n_params == 16 * 768


def test_sinusoid_matches_the_seed_formula_by_hand():
    assert sinusoidal(1, 0, 4) == pytest.approx(math.sin(1))
    assert sinusoidal(1, 1, 4) == pytest.approx(math.cos(1))
    assert sinusoidal(2, 2, 4) == pytest.approx(0.019998666720)   # sin(2 / 10000^(2/4))
    assert sinusoidal(2, 3, 4) == pytest.approx(0.999800006666)   # cos(0.02)
    assert sinusoidal(0, 5, 8) == 1.0


def test_sinusoid_matches_the_usual_torch_table():
    max_len, d = 50, 16
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float64) * (-math.log(10000.0) / d))
    table = torch.zeros(max_len, d, dtype=torch.float64)
    table[:, 0::2], table[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
    ours = [[sinusoidal(t, i, d) for i in range(d)] for t in range(max_len)]
    assert torch.allclose(torch.tensor(ours, dtype=torch.float64), table, atol=1e-12)


def test_learned_without_max_len_points_at_type(diagnose):
    got, where, msg, _ = error_at(diagnose, "{name: n, op: position_embedding, in: x, type: learned}", "learned")
    assert got == where and "needs max_len" in msg


def test_sequence_longer_than_the_table_points_at_max_len(diagnose):
    got, where, msg, _ = error_at(diagnose, "{name: n, op: position_embedding, in: x, type: learned, max_len: 512}", "512",
                               {"x": (["batch", 1024, 768], "float32")})
    assert got == where and "sequence length 1024 exceeds max_len 512" in msg


def test_dim_mismatch_points_at_dim(diagnose):
    got, where, msg, _ = error_at(diagnose, "{name: n, op: position_embedding, in: x, type: sinusoidal, dim: 512}", "512")
    assert got == where and "dim: expected the input width 768, got 512" in msg


def test_odd_width_sinusoid_is_an_error(diagnose):
    got, where, msg, _ = error_at(diagnose, "{name: n, op: position_embedding, in: x, type: sinusoidal}", "sinusoidal",
                               {"x": (["batch", "seq", 7], "float32")})
    assert got == where and "width must be even, got 7" in msg


def test_positions_of_the_wrong_shape_point_at_the_input(diagnose):
    inputs = {**X, "pos": (["batch", "seq", 2], "int64")}
    got, where, msg, _ = error_at(diagnose, "{name: n, op: position_embedding, in: {x: x, positions: pos}, type: learned, "
                                         "max_len: 16}", "pos}", inputs)
    assert got == where and "positions: expected [batch, seq] (x without its last dim), got [batch, seq, 2]" in msg
