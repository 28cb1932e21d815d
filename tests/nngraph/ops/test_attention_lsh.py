"""Reformer LSH attention, front end: shape, the shared-QK parameter count, errors at the parameter."""

from __future__ import annotations

import pytest

from _onenode import one_node, single_error

X = {"x": (["batch", "seq", 64], "float32")}


@pytest.mark.parametrize("extra, expected", [
    ("", 2 * (64 * 64 + 64) + 64 * 64 + 64),                      # qk, v [64, 64] + biases; out
    ("bias: false, out_bias: false", 3 * 64 * 64),
    ("head_dim: 8", 2 * (64 * 32 + 32) + 32 * 64 + 64),           # 4 heads of 8: H·d = 32
])
def test_shared_qk_has_one_projection_for_queries_and_keys(diagnose, extra, expected):
    sep = ", " if extra else ""
    node = one_node(diagnose, f"{{name: n, op: lsh_attention, in: x, heads: 4{sep}{extra}}}", X)
    assert node.out.shape == ("batch", "seq", 64)
    assert node.n_params == expected


@pytest.mark.parametrize("node, token, message", [
    ("{name: n, op: lsh_attention, in: x, heads: 4, n_buckets: 7}", "7",
     "node 'n' (lsh_attention): n_buckets must be even, got 7"),
    ("{name: n, op: lsh_attention, in: x, heads: 3}", "3",
     "node 'n' (lsh_attention): d_model 64 is not divisible by heads 3"),
    ("{name: n, op: lsh_attention, in: x, heads: 4, chunk_size: 0}", "0",
     "parameter 'chunk_size' of node 'n' (lsh_attention): must be >= 1, got 0"),
])
def test_errors_point_at_the_parameter(diagnose, node, token, message):
    got, want, msg, _ = single_error(diagnose, node, token, X)
    assert got == want and msg == message
