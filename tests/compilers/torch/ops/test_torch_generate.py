"""Generators compiled to torch against numpy (arange, full, meshgrid; exact), including sizes read from a graph
input at run time and Swin's relative-position index built inside the spec, and their ONNX export run in
ONNX Runtime (exact for integers, <= 1e-4 relative for floats)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

SEQ = "x: {shape: [batch, seq], dtype: float32}"


def _run(run_op, onnx_check, nodes, inputs: str, feeds: dict, wants: list, outputs: str = "[n]"):
    model, graph = run_op(nodes, inputs, outputs)
    got = model(**{k: torch.from_numpy(v) for k, v in feeds.items()})
    got = list(got.values()) if isinstance(got, dict) else [got]
    for g, w in zip(got, wants, strict=True):
        g = g.numpy()
        assert g.shape == w.shape and g.dtype == w.dtype, (g.shape, w.shape, g.dtype, w.dtype)
        assert np.array_equal(g, w)
    ort_err = onnx_check(model, graph, feeds)
    assert ort_err <= 1e-4
    return model


@pytest.mark.parametrize("seq", [5, 9])
def test_arange_to_a_symbolic_end_follows_the_input(run_op, onnx_check, seq):
    x = np.zeros((2, seq), np.float32)
    _run(run_op, onnx_check, "{name: n, op: arange, start: 1, end: seq, step: 2}", SEQ, {"x": x},
         [np.arange(1, seq, 2, dtype=np.int64)])


@pytest.mark.parametrize("seq", [4, 7])
def test_arange_of_dim_expressions_follows_the_input(run_op, onnx_check, seq):
    """start, end and step as expressions of the input's seq: the relative offsets -(seq-1)..seq-1 and a stride."""
    x = np.zeros((2, seq), np.float32)
    nodes = ["{name: r, op: arange, start: 1 - seq, end: seq}", "{name: s, op: arange, start: 1, end: seq * 2 + 1, step: seq}"]
    _run(run_op, onnx_check, nodes, SEQ, {"x": x},
         [np.arange(1 - seq, seq, dtype=np.int64), np.arange(1, 2 * seq + 1, seq, dtype=np.int64)], outputs="{r: r, s: s}")


def test_arange_static_float(run_op, onnx_check):
    _run(run_op, onnx_check, "{name: n, op: arange, start: 4, end: -2, step: -3, dtype: float32}", SEQ,
         {"x": np.zeros((2, 3), np.float32)}, [np.arange(4, -2, -3, dtype=np.float32)])


def test_full_shaped_by_symbols_zeros_like_and_ones(run_op, onnx_check):
    x = np.random.default_rng(0).standard_normal((2, 6)).astype(np.float32)
    nodes = ["{name: f, op: full, shape: [seq, 3], value: -100.0}", "{name: z, op: zeros, in: {like: x}}",
             "{name: o, op: ones, shape: [batch, seq], dtype: bool}"]
    model = _run(run_op, onnx_check, nodes, SEQ, {"x": x},
                 [np.full((6, 3), -100.0, np.float32), np.zeros_like(x), np.ones((2, 6), bool)],
                 outputs="{f: f, z: z, o: o}")
    assert not model.state_dict()   # generators hold no weights


@pytest.mark.parametrize("indexing", ["ij", "xy"])
def test_meshgrid(run_op, onnx_check, indexing):
    nodes = ["{name: h, op: arange, end: 3}", "{name: w, op: arange, end: seq}",
             f"{{name: n, op: meshgrid, in: [h, w], indexing: {indexing}, names: [r, c]}}"]
    r, c = np.meshgrid(np.arange(3), np.arange(4), indexing=indexing)
    _run(run_op, onnx_check, nodes, SEQ, {"x": np.zeros((2, 4), np.float32)}, [r, c], outputs="{r: n.r, c: n.c}")


SWIN_INDEX = [
    "{name: h, op: arange, end: 3}", "{name: w, op: arange, end: 3}",
    "{name: g, op: meshgrid, in: [h, w], names: [r, c]}",
    "{name: s, op: stack, in: [g.r, g.c], dim: 0}",
    "{name: f, op: flatten, in: s, start_dim: 1}",
    "{name: a, op: unsqueeze, in: f, dim: 2}", "{name: b, op: unsqueeze, in: f, dim: 1}",
    "{name: rel, op: sub, in: [a, b]}",
    "{name: d, op: unstack, in: rel, dim: 0, names: [dh, dw]}",
    "{name: k, op: full, shape: [1], value: 5, dtype: int64}",
    "{name: o, op: full, shape: [1], value: 12, dtype: int64}",
    "{name: m, op: mul, in: [d.dh, k]}",
    "{name: n, op: add, in: [m, d.dw, o]}",
]


def test_swin_relative_position_index_is_computed_in_the_spec(run_op, onnx_check):
    """(dh + W − 1)(2W − 1) + (dw + W − 1) for a 3×3 window, as Swin's reference code builds it."""
    coords = np.stack(np.meshgrid(np.arange(3), np.arange(3), indexing="ij")).reshape(2, -1)
    rel = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0)
    rel[:, :, 0] += 2
    rel[:, :, 1] += 2
    rel[:, :, 0] *= 5
    _run(run_op, onnx_check, SWIN_INDEX, SEQ, {"x": np.zeros((1, 2), np.float32)}, [rel.sum(-1).astype(np.int64)])
