"""Reductions and scans compiled to torch against numpy (fp32, <= 1e-5 relative to the output's scale), and their
ONNX export run in ONNX Runtime (<= 1e-4 relative; integer outputs exact)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

X = "x: {shape: [batch, 4, 6], dtype: float32}"


def _x(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((3, 4, 6)).astype(np.float32)


def _logsumexp(x, axis, keepdims):
    m = x.max(axis=axis, keepdims=True)
    out = np.log(np.exp(x - m).sum(axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


MODES = {"mean": np.mean, "sum": np.sum, "max": np.max, "min": np.min, "prod": np.prod, "logsumexp": _logsumexp}


def _check(run_op, onnx_check, node: str, feeds: dict, want: np.ndarray, inputs: str = X) -> None:
    model, graph = run_op(node, inputs)
    got = model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).numpy()
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, want.shape, got.dtype, want.dtype)
    if want.dtype.kind in "biu":
        assert np.array_equal(got, want)
        err = 0.0
    else:
        err = float(np.abs(got.astype(np.float64) - want).max() / max(1.0, np.abs(want).max()))
        assert err <= 1e-5, err
    ort_err = onnx_check(model, graph, feeds)
    print(f"{node}: torch {err:.2e} ort {ort_err:.2e}")
    assert ort_err <= 1e-4


@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("dim", [[0, 2], -1, [2, 1]])
@pytest.mark.parametrize("mode", MODES)
def test_reduce_modes_over_given_dims(run_op, onnx_check, mode, dim, keepdim):
    x = _x()
    axis = tuple(dim) if isinstance(dim, list) else dim
    want = MODES[mode](x.astype(np.float64), axis=axis, keepdims=keepdim).astype(np.float32)
    node = f"{{name: n, op: reduce, in: x, mode: {mode}, dim: {dim}, keepdim: {str(keepdim).lower()}}}"
    _check(run_op, onnx_check, node, {"x": x}, want)


@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("op,fn", [("argmax", np.argmax), ("argmin", np.argmin)])
def test_argmax_argmin_give_int64_indices(run_op, onnx_check, op, fn, keepdim):
    x = _x()
    want = fn(x, axis=1, keepdims=keepdim).astype(np.int64)
    _check(run_op, onnx_check, f"{{name: n, op: {op}, in: x, dim: 1, keepdim: {str(keepdim).lower()}}}",
           {"x": x}, want)


def test_cumsum_of_floats(run_op, onnx_check):
    x = _x()
    _check(run_op, onnx_check, "{name: n, op: cumsum, in: x, dim: 1}", {"x": x},
           np.cumsum(x.astype(np.float64), axis=1).astype(np.float32))


def test_cumsum_of_a_mask_gives_int64_positions(run_op, onnx_check):
    """RoBERTa's positions: the running count of non-pad tokens."""
    mask = _x() > 0
    _check(run_op, onnx_check, "{name: n, op: cumsum, in: x, dim: -1}", {"x": mask},
           np.cumsum(mask.astype(np.int64), axis=-1), "x: {shape: [batch, 4, 6], dtype: bool}")


@pytest.mark.parametrize("dim", [-1, 1])
def test_normalize_divides_by_the_l2_norm(run_op, onnx_check, dim):
    x = _x()
    x[0, 0] = 0.0   # a zero vector: eps keeps it finite (zero)
    x64 = x.astype(np.float64)
    want = x64 / np.maximum(np.sqrt((x64 ** 2).sum(axis=dim, keepdims=True)), 1e-12)
    _check(run_op, onnx_check, f"{{name: n, op: normalize, in: x, dim: {dim}}}", {"x": x}, want.astype(np.float32))
