"""Reductions and scans: shape rules on symbolic dims and located errors."""

from __future__ import annotations

import pytest

from _onenode import one_node, single_error

X = {"x": (["batch", "seq", 8], "float32")}


@pytest.mark.parametrize("node,shape,dtype", [
    ("{name: n, op: reduce, in: x, mode: logsumexp, dim: [0, 2]}", ("seq",), "float32"),
    ("{name: n, op: reduce, in: x, mode: prod, dim: 1, keepdim: true}", ("batch", 1, 8), "float32"),
    ("{name: n, op: argmax, in: x, dim: 1}", ("batch", 8), "int64"),
    ("{name: n, op: argmin, in: x, keepdim: true}", ("batch", "seq", 1), "int64"),
    ("{name: n, op: cumsum, in: x, dim: 1}", ("batch", "seq", 8), "float32"),
    ("{name: n, op: normalize, in: x}", ("batch", "seq", 8), "float32"),
])
def test_shapes_and_dtypes(diagnose, node, shape, dtype):
    out = one_node(diagnose, node, X).out
    assert out.shape == shape and out.dtype == dtype


def test_cumsum_of_a_bool_mask_is_int64(diagnose):
    assert one_node(diagnose, "{name: n, op: cumsum, in: m, dim: 1}", {"m": (["batch", "seq"], "bool")}).out.dtype == "int64"


def test_a_dim_out_of_range_is_located_at_the_param(diagnose):
    got, want, message, _ = single_error(diagnose, "{name: n, op: argmax, in: x, dim: 3}", "dim: 3", X)
    assert "out of range" in message and got == (want[0], want[1] + len("dim: "))


def test_a_dim_named_twice_fails(diagnose):
    _, _, message, _ = single_error(diagnose, "{name: n, op: reduce, in: x, dim: [1, -2]}", "dim:", X)
    assert "twice" in message


def test_logsumexp_needs_floats(diagnose):
    _, _, message, _ = single_error(diagnose, "{name: n, op: reduce, in: x, mode: logsumexp}", "{",
                                    {"x": ([4], "int64")})
    assert "floating-point" in message
