"""reshape refuses a target whose element count provably differs from the input's, symbolic dims included."""

from __future__ import annotations


def _reshape(diagnose, target: str):
    """Validate ``x [batch, 4, 16] -> reshape(target)``; (graph, errors)."""
    return diagnose(f"""
        nngraph: 1
        name: r
        inputs:
          x: {{shape: [batch, 4, 16], dtype: float32}}
        graph:
          - {{name: y, op: reshape, in: x, shape: {target}}}
        outputs: {{y: y}}
    """)


def test_reshape_with_a_wrong_count_over_symbolic_dims_is_refused(diagnose):
    _, errors = _reshape(diagnose, "[0, 0, 2, 2]")
    assert [(line, msg) for line, col, msg, hint in errors] == [
        (6, "node 'y' (reshape): cannot reshape [batch, 4, 16] to [batch, 4, 2, 2]: the element counts differ "
            "(batch*64 vs batch*16)")]


def test_reshape_with_the_same_count_over_symbolic_dims_is_accepted(diagnose):
    graph, errors = _reshape(diagnose, "[0, 0, 8, 2]")
    assert errors == []
    assert [str(d) for d in graph.nodes["y"].out.shape] == ["batch", "4", "8", "2"]


def test_reshape_infers_minus_one_by_cancelling_shared_dims(diagnose):
    graph, errors = _reshape(diagnose, "[0, 0, 8, -1]")
    assert errors == []
    assert [str(d) for d in graph.nodes["y"].out.shape] == ["batch", "4", "8", "2"]
