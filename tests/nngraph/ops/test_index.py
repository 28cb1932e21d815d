"""Indexing ops: shape rules on symbolic dims and located errors."""

from __future__ import annotations

import pytest

from _onenode import one_node, single_error

XI = {"x": (["batch", "seq", 8], "float32"), "i": (["batch", "seq", 2], "int64")}


@pytest.mark.parametrize("node,inputs,shape,dtype", [
    ("{name: n, op: gather, in: [x, i], dim: -1}", XI, ("batch", "seq", 2), "float32"),
    ("{name: n, op: index_select, in: [x, k], dim: 1}", {"x": (["batch", "seq", 8], "float32"), "k": (["m"], "int64")},
     ("batch", "m", 8), "float32"),
    ("{name: n, op: one_hot, in: y, classes: 10}", {"y": (["batch", "seq"], "int64")}, ("batch", "seq", 10), "float32"),
    ("{name: n, op: lookup, in: y, table: [[1, 2, 3], [4, 5, 6]], dtype: int64}", {"y": (["batch", "seq"], "int64")},
     ("batch", "seq", 3), "int64"),
])
def test_shapes(diagnose, node, inputs, shape, dtype):
    out = one_node(diagnose, node, inputs).out
    assert out.shape == shape and out.dtype == dtype


def test_gather_needs_an_integer_index_of_the_same_rank(diagnose):
    _, _, message, _ = single_error(diagnose, "{name: n, op: gather, in: [x, i]}", "{",
                                    {"x": (["batch", 8], "float32"), "i": ([2], "int64")})
    assert "must have the rank of x" in message
    _, _, message, _ = single_error(diagnose, "{name: n, op: gather, in: [x, i]}", "{",
                                    {"x": (["batch", 8], "float32"), "i": (["batch", 2], "float32")})
    assert "integer tensor" in message


@pytest.mark.parametrize("table", ["[[1, 2], [3]]", "[]", "[a, b]"])
def test_a_ragged_or_empty_table_is_located(diagnose, table):
    got, want, message, _ = single_error(diagnose, f"{{name: n, op: lookup, in: y, table: {table}}}", "table:",
                                         {"y": ([4], "int64")})
    assert "equal-length" in message and got[0] == want[0]
