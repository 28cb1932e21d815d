"""Elementwise math ops compiled to torch against numpy formulas (fp32, max abs diff <= 1e-5 relative to the
output's scale), and exported to ONNX and run in ONNX Runtime (<= 1e-4 relative; bool outputs exact)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

_ERF = np.vectorize(math.erf)
X = "x: {shape: [batch, 8], dtype: float32}"
AB = "a: {shape: [batch, 8], dtype: float32}\nb: {shape: [8], dtype: float32}"
MASKS = "a: {shape: [batch, 8], dtype: bool}\nb: {shape: [8], dtype: bool}"
POS = {"log", "sqrt", "rsqrt"}   # defined for x > 0 only


def _x(seed: int = 0, shape=(4, 8)) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * 2).astype(np.float32)


def _relu6(x):
    return np.clip(x, 0, 6)


UNARY = {
    "exp": np.exp, "log": np.log, "sqrt": np.sqrt, "rsqrt": lambda x: 1 / np.sqrt(x), "reciprocal": lambda x: 1 / x,
    "sin": np.sin, "cos": np.cos, "erf": _ERF, "abs": np.abs, "neg": np.negative,
    "relu6": _relu6, "hardswish": lambda x: x * _relu6(x + 3) / 6, "hardsigmoid": lambda x: _relu6(x + 3) / 6,
    "mish": lambda x: x * np.tanh(np.log1p(np.exp(x))),
}
BINARY = {
    "div": np.divide, "maximum": np.maximum, "minimum": np.minimum,
    "eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal,
}
LOGIC = {"logical_and": np.logical_and, "logical_or": np.logical_or}


def _assert_close(got: torch.Tensor, want: np.ndarray) -> float:
    got = got.detach().numpy()
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, want.shape, got.dtype, want.dtype)
    if want.dtype.kind in "biu":
        assert np.array_equal(got, want)
        return 0.0
    err = float(np.abs(got.astype(np.float64) - want).max() / max(1.0, np.abs(want).max()))
    assert err <= 1e-5, err
    return err


def _check(run_op, onnx_check, node: str, inputs: str, feeds: dict, want: np.ndarray) -> None:
    model, graph = run_op(node, inputs)
    torch_err = _assert_close(model(**{k: torch.from_numpy(v) for k, v in feeds.items()}), want)
    ort_err = onnx_check(model, graph, feeds)
    print(f"{node}: torch {torch_err:.2e} ort {ort_err:.2e}")
    assert ort_err <= 1e-4


@pytest.mark.parametrize("name", UNARY)
def test_unary_matches_numpy(run_op, onnx_check, name):
    x = np.abs(_x()) + 0.1 if name in POS else _x()
    want = UNARY[name](x.astype(np.float64)).astype(np.float32)
    _check(run_op, onnx_check, f"{{name: n, op: {name}, in: x}}", X, {"x": x}, want)


@pytest.mark.parametrize("name", BINARY)
def test_binary_and_comparisons_broadcast_and_match_numpy(run_op, onnx_check, name):
    a, b = _x(), _x(1, (8,))
    a[0, :4] = b[:4]   # some equal pairs, so eq/le/ge see both outcomes
    want = BINARY[name](a.astype(np.float64), b.astype(np.float64))
    want = want if want.dtype == np.bool_ else want.astype(np.float32)
    _check(run_op, onnx_check, f"{{name: n, op: {name}, in: [a, b]}}", AB, {"a": a, "b": b}, want)


@pytest.mark.parametrize("name", LOGIC)
def test_logic_on_bool_masks(run_op, onnx_check, name):
    a, b = _x() > 0, _x(1, (8,)) > 0
    _check(run_op, onnx_check, f"{{name: n, op: {name}, in: [a, b]}}", MASKS, {"a": a, "b": b}, LOGIC[name](a, b))


def test_logical_not(run_op, onnx_check):
    a = _x() > 0
    _check(run_op, onnx_check, "{name: n, op: logical_not, in: a}", "a: {shape: [batch, 8], dtype: bool}",
           {"a": a}, ~a)


def test_pow_with_a_constant_exponent(run_op, onnx_check):
    x = np.abs(_x()) + 0.1
    _check(run_op, onnx_check, "{name: n, op: pow, in: x, exponent: 1.5}", X, {"x": x},
           (x.astype(np.float64) ** 1.5).astype(np.float32))


def test_pow_with_a_tensor_exponent_broadcasts(run_op, onnx_check):
    x, p = np.abs(_x()) + 0.1, _x(1, (8,))
    _check(run_op, onnx_check, "{name: n, op: pow, in: {x: x, exponent: p}}",
           "x: {shape: [batch, 8], dtype: float32}\np: {shape: [8], dtype: float32}", {"x": x, "p": p},
           (x.astype(np.float64) ** p).astype(np.float32))


@pytest.mark.parametrize("bounds,lo,hi", [("min: -1.0, max: 0.5", -1.0, 0.5), ("min: 0.0", 0.0, None),
                                          ("max: 1.0", None, 1.0)])
def test_clamp_with_either_or_both_bounds(run_op, onnx_check, bounds, lo, hi):
    x = _x()
    _check(run_op, onnx_check, f"{{name: n, op: clamp, in: x, {bounds}}}", X, {"x": x}, np.clip(x, lo, hi))


def test_clamp_of_integers_keeps_the_dtype(run_op, onnx_check):
    x = np.random.default_rng(0).integers(-9, 9, (4, 8)).astype(np.int64)
    _check(run_op, onnx_check, "{name: n, op: clamp, in: x, min: -2, max: 3}", "x: {shape: [batch, 8], dtype: int64}",
           {"x": x}, np.clip(x, -2, 3))


def test_where_selects_and_broadcasts_three_inputs(run_op, onnx_check):
    c, a, b = _x() > 0, _x(1), _x(2, (8,))
    _check(run_op, onnx_check, "{name: n, op: where, in: [c, a, b]}",
           "c: {shape: [batch, 8], dtype: bool}\n" + AB, {"c": c, "a": a, "b": b}, np.where(c, a, b))


@pytest.mark.parametrize("op", ["mlp", "gated_mlp"])
def test_ffn_gelu_tanh_is_the_tanh_approximation(run_op, op):
    model, _ = run_op(f"{{name: n, op: {op}, in: x, hidden: 16, activation: gelu_tanh}}")
    x = torch.from_numpy(_x())
    ffn = model.n

    def gelu_tanh(h):
        return 0.5 * h * (1 + torch.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h ** 3)))

    with torch.no_grad():
        if op == "mlp":
            want = ffn.down(gelu_tanh(ffn.up(x)))
        else:
            want = ffn.down(gelu_tanh(ffn.gate(x)) * ffn.up(x))
        assert (model(x) - want).abs().max().item() <= 1e-5
