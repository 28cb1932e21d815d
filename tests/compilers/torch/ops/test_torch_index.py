"""Indexing ops compiled to torch against numpy (take_along_axis, take, eye rows, fancy indexing; exact), and
their ONNX export run in ONNX Runtime (<= 1e-4 relative; integer outputs exact)."""

from __future__ import annotations

import numpy as np
import pytest
import torch


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _check(run_op, onnx_check, node: str, inputs: str, feeds: dict, want: np.ndarray) -> None:
    model, graph = run_op(node, inputs)
    got = model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).numpy()
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, want.shape, got.dtype, want.dtype)
    err = float(np.abs(got.astype(np.float64) - want).max() / max(1.0, np.abs(want).max()))
    assert err <= 1e-5, err
    ort_err = onnx_check(model, graph, feeds)
    print(f"{node}: torch {err:.2e} ort {ort_err:.2e}")
    assert ort_err <= 1e-4


@pytest.mark.parametrize("dim", [1, -1])
def test_gather_is_take_along_axis(run_op, onnx_check, dim):
    x = _rng().standard_normal((3, 5, 6)).astype(np.float32)
    idx_shape = (3, 2, 6) if dim == 1 else (3, 5, 4)
    idx = _rng(1).integers(0, x.shape[dim], idx_shape).astype(np.int64)
    _check(run_op, onnx_check, f"{{name: n, op: gather, in: [x, i], dim: {dim}}}",
           f"x: {{shape: [batch, 5, 6], dtype: float32}}\ni: {{shape: [batch, {idx_shape[1]}, {idx_shape[2]}], dtype: int64}}",
           {"x": x, "i": idx}, np.take_along_axis(x, idx, axis=dim))


def test_index_select_picks_slices(run_op, onnx_check):
    x = _rng().standard_normal((3, 7, 4)).astype(np.float32)
    ids = np.array([6, 0, 3, 3, 1], dtype=np.int64)
    _check(run_op, onnx_check, "{name: n, op: index_select, in: [x, i], dim: 1}",
           "x: {shape: [batch, 7, 4], dtype: float32}\ni: {shape: [k], dtype: int64}", {"x": x, "i": ids},
           np.take(x, ids, axis=1))


@pytest.mark.parametrize("dtype", ["float32", "int64"])
def test_one_hot(run_op, onnx_check, dtype):
    labels = _rng().integers(0, 5, (4, 3)).astype(np.int64)
    _check(run_op, onnx_check, f"{{name: n, op: one_hot, in: y, classes: 5, dtype: {dtype}}}",
           "y: {shape: [batch, 3], dtype: int64}", {"y": labels}, np.eye(5, dtype=dtype)[labels])


@pytest.mark.parametrize("table,dtype", [([[0.5, -1.0], [2.0, 3.0], [4.0, 0.25]], "float32"),
                                         ([7, 1, 4, 2], "int64")])
def test_lookup_into_a_constant_table(run_op, onnx_check, table, dtype):
    ids = _rng().integers(0, len(table), (3, 5)).astype(np.int64)
    model, _ = run_op(f"{{name: n, op: lookup, in: i, table: {table}, dtype: {dtype}}}",
                      "i: {shape: [batch, 5], dtype: int64}")
    assert "n" not in model.state_dict()   # a constant, not a weight
    _check(run_op, onnx_check, f"{{name: n, op: lookup, in: i, table: {table}, dtype: {dtype}}}",
           "i: {shape: [batch, 5], dtype: int64}", {"i": ids}, np.array(table, dtype=dtype)[ids])
