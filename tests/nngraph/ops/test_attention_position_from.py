"""``position_from``: attention nodes reading one learned position table (T5's one table per stack).

Counts are checked against the table sizes by hand: t5_bias [num_buckets, heads], window_bias
[(2r-1)(2c-1), heads], shaw [2k+1, head_dim]; errors must sit on the ``position_from`` value.
"""

from __future__ import annotations

import pytest

SPEC = """
nngraph: 1
name: pf
inputs:
  x: {{shape: [2, 4, 16]}}
blocks:
  layer:
    inputs: [x]
    nodes:
      - {{name: a, op: attention, in: x, heads: 2, position: {pos}, position_from: {ref}}}
    outputs: [a]
graph:
  - {{name: body, block: layer, repeat: 3, in: x}}
outputs: [body]
"""
T5 = "{type: t5_bias, num_buckets: 8, max_distance: 16}"
PROJ = 4 * (16 * 16 + 16)  # q, k, v, out weights and biases at d_model 16


@pytest.mark.parametrize("pos, table", [
    (T5, 8 * 2),
    ("{type: window_bias, window: 2}", 3 * 3 * 2),
    ("{type: shaw, max_distance: 2}", 5 * 8),
])
def test_the_table_is_counted_once_for_all_its_users(diagnose, pos, table):
    graph, errors = diagnose(SPEC.format(pos=pos, ref="/body.0.a"))
    assert errors == []
    own = {n: graph.nodes[n].n_params for n in ("body.0.a", "body.1.a", "body.2.a")}
    assert own == {"body.0.a": PROJ + table, "body.1.a": PROJ, "body.2.a": PROJ}
    assert graph.total_params == 3 * PROJ + table


def _error(diagnose, text: str) -> tuple:
    _, errors = diagnose(text)
    assert errors, "expected an error"
    line, col, message, hint = errors[0]
    lines = text.lstrip("\n").splitlines()
    assert lines[line - 1][col - 1:].startswith("position_from") or lines[line - 1][col - 1:].startswith("/body"), \
        (line, col, lines[line - 1])
    return message, hint


def test_an_unknown_node_is_a_located_error(diagnose):
    message, _ = _error(diagnose, SPEC.format(pos=T5, ref="/body.0.b"))
    assert "unknown node 'body.0.b'" in message


def test_a_different_table_shape_is_a_located_error(diagnose):
    text = SPEC.format(pos="{type: t5_bias, num_buckets: \"${8 if index == 0 else 16}\"}", ref="/body.0.a")
    message, hint = _error(diagnose, text)
    assert "differs from this node's" in message and "8, 'max_distance'" in message and "same position encoding" in hint


def test_a_different_encoding_is_a_located_error(diagnose):
    text = SPEC.format(pos="\"${'t5_bias' if index == 0 else 'alibi'}\"", ref="/body.0.a")
    message, _ = _error(diagnose, text)
    assert "alibi" in message


def test_an_encoding_without_a_table_is_refused(diagnose):
    message, _ = _error(diagnose, SPEC.format(pos="alibi", ref="/body.0.a"))
    assert "no learned table" in message
