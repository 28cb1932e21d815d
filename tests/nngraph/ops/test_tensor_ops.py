"""Tensor/structure ops: shape rules on symbolic dims."""

import pytest

from nngraph.expr import evaluate
from nngraph.ops.tensor import _symbolic_slice_length


@pytest.mark.parametrize("start, end, step", [(0, -1, 1), (1, None, 1), (-3, None, 1), (0, None, 2), (-5, -1, 2), (2, -1, 3)])
@pytest.mark.parametrize("n", [7, 17, 64])
def test_slice_of_a_symbolic_dim_is_an_expression_with_python_slice_length(start, end, step, n):
    expr = _symbolic_slice_length("tgt", start, end, step)
    got = expr if isinstance(expr, int) else evaluate(expr, {"tgt": n})
    assert got == len(range(*slice(start, end, step).indices(n)))


def test_slice_node_over_a_symbolic_sequence_infers_an_evaluable_length(diagnose):
    graph, errors = diagnose("""
        nngraph: 1
        name: s
        inputs:
          x: {shape: [batch, seq, 4]}
        graph:
          - {name: head, op: slice, in: x, dim: 1, start: 0, end: -1}
        outputs: [head]
    """)
    assert not errors
    assert graph.nodes["head"].out.shape == ("batch", "seq-1", 4)
