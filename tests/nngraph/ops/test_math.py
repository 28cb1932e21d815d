"""Elementwise math ops: broadcast shape rules on symbolic dims, dtypes, and located errors for bad input."""

from __future__ import annotations

import pytest

from _onenode import one_node, single_error

FLOATS = {"a": (["batch", "seq", 8], "float32"), "b": ([8], "float32")}


@pytest.mark.parametrize("op,dtype", [("div", "float32"), ("maximum", "float32"), ("lt", "bool"), ("eq", "bool")])
def test_binary_ops_broadcast_symbolic_shapes(diagnose, op, dtype):
    node = one_node(diagnose, f"{{name: n, op: {op}, in: [a, b]}}", FLOATS)
    assert node.out.shape == ("batch", "seq", 8) and node.out.dtype == dtype


def test_where_broadcasts_cond_and_both_branches(diagnose):
    inputs = {"c": (["batch", 1, "seq"], "bool"), "a": (["seq"], "float32"), "b": ([1], "float32")}
    node = one_node(diagnose, "{name: n, op: where, in: [c, a, b]}", inputs)
    assert node.out.shape == ("batch", 1, "seq") and node.out.dtype == "float32"


def test_unary_float_op_rejects_integer_input(diagnose):
    _, where, message, _ = single_error(diagnose, "{name: n, op: exp, in: x}", "{", {"x": ([4], "int64")})
    assert "floating-point" in message


def test_logic_needs_bool_masks(diagnose):
    _, _, message, hint = single_error(diagnose, "{name: n, op: logical_and, in: [a, b]}", "{", FLOATS)
    assert "bool" in message and "comparison" in hint


def test_pow_needs_exactly_one_exponent(diagnose):
    got, want, message, _ = single_error(diagnose, "{name: n, op: pow, in: x}", "{", {"x": ([4], "float32")})
    assert "exactly one" in message


def test_clamp_needs_a_bound_and_min_not_above_max(diagnose):
    _, _, message, _ = single_error(diagnose, "{name: n, op: clamp, in: x}", "{", {"x": ([4], "float32")})
    assert "'min', 'max' or both" in message
    got, want, message, _ = single_error(diagnose, "{name: n, op: clamp, in: x, min: 2.0, max: 1.0}", "min: 2.0",
                                         {"x": ([4], "float32")})
    assert "above max" in message and got == (want[0], want[1] + len("min: "))


def test_mismatched_broadcast_is_located_at_the_node(diagnose):
    inputs = {"a": (["batch", 8], "float32"), "b": ([5], "float32")}
    got, want, message, _ = single_error(diagnose, "{name: n, op: maximum, in: [a, b]}", "{", inputs)
    assert got == want and "do not broadcast" in message


def test_clamp_of_integers_needs_integer_bounds(diagnose):
    _, _, message, _ = single_error(diagnose, "{name: n, op: clamp, in: x, max: 2.5}", "max:", {"x": ([4], "int64")})
    assert "fractional" in message
