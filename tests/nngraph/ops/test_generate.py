"""Generators: symbolic sizes, dtypes and located errors."""

from __future__ import annotations

import pytest

from _onenode import one_node, single_error

X = {"x": (["batch", "seq"], "float32")}


@pytest.mark.parametrize("node,shape,dtype", [
    ("{name: n, op: arange, end: seq}", ("seq",), "int64"),
    ("{name: n, op: arange, start: 1, end: seq, step: 2, dtype: float32}", ("seq//2",), "float32"),
    ("{name: n, op: arange, start: 10, end: 0, step: -3}", (4,), "int64"),
    ("{name: n, op: arange, end: seq + 1}", ("seq+1",), "int64"),
    ("{name: n, op: arange, start: 1 - seq, end: seq}", ("seq*2-1",), "int64"),   # relative offsets
    ("{name: n, op: arange, start: seq, end: seq * 3, step: 2}", ("seq",), "int64"),
    ("{name: n, op: arange, end: '${2 * 3} * seq', step: 2}", ("seq*3",), "int64"),  # a var folded in
    ("{name: n, op: full, shape: [seq, seq], value: 1.5}", ("seq", "seq"), "float32"),
    ("{name: n, op: zeros, in: {like: x}, dtype: bool}", ("batch", "seq"), "bool"),
    ("{name: n, op: ones, in: {like: x}}", ("batch", "seq"), "float32"),
])
def test_shapes(diagnose, node, shape, dtype):
    out = one_node(diagnose, node, X).out
    assert out.shape == shape and out.dtype == dtype


def test_meshgrid_shapes(diagnose):
    graph, errors = diagnose("""
        nngraph: 1
        name: t
        inputs:
          x: {shape: [batch, seq]}
        graph:
          - {name: a, op: arange, end: 3}
          - {name: b, op: arange, end: seq}
          - {name: g, op: meshgrid, in: [a, b], indexing: xy, names: [p, q]}
        outputs: {p: g.p}
    """)
    assert not errors
    assert graph.nodes["g"].outputs["p"].shape == ("seq", 3)


@pytest.mark.parametrize("node,token,needle", [
    ("{name: n, op: arange, end: 0}", "end:", "is empty"),
    ("{name: n, op: arange, end: seq, step: -1}", "step:", "integer start and end"),
    ("{name: n, op: arange, end: seq, step: 1 - seq}", "step:", "provably positive"),
    ("{name: n, op: arange, end: 'seq +* 2'}", "end:", "an expression of symbolic dims"),
    ("{name: n, op: arange, start: seq, end: seq}", "end:", "is empty"),
    ("{name: n, op: full, value: 1.0}", "{", "exactly one"),
    ("{name: n, op: zeros, shape: [seq, 0]}", "shape:", "integers >= 1"),
])
def test_bad_params_are_located(diagnose, node, token, needle):
    got, want, message, _ = single_error(diagnose, node, token, X)
    assert needle in message and got[0] == want[0]
