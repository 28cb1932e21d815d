"""Checks that need no tensors run at validate (issue 16 item 2): optional inputs that may be absent, dtypes.

Each case is one a user met as a crash in compile or forward after ``validate`` said ok.
"""

from __future__ import annotations

import pytest

from nngraph.spec import load_spec

ATTENTION = """\
nngraph: 1
name: t
inputs:
  x: {shape: [batch, 2, 4], dtype: float32}
  m: {shape: [batch, 2], dtype: bool, optional: OPTIONAL}
graph:
  - {name: a, op: attention, in: {x: x, key_padding: m}, heads: 2, mask: key_padding}
outputs: [a]
"""


def test_an_optional_input_a_mask_needs_is_a_located_error(diagnose):
    """Compile used to crash on it: ``TypeError: 'NoneType' object is not subscriptable``."""
    _, errors = diagnose(ATTENTION.replace("OPTIONAL", "true"))
    ((line, col, message, hint),) = errors
    assert (line, col) == (7, ATTENTION.splitlines()[6].index("key_padding: m") + 14)
    assert message == ("node 'a' (attention): when the optional graph input 'm' is absent: mask 'key_padding' needs "
                       "graph input 'lengths' or 'key_padding' connected to this node")
    assert hint.startswith("declare the input without 'optional: true'")


def test_the_same_input_when_required_is_fine(diagnose):
    assert diagnose(ATTENTION.replace("OPTIONAL", "false"))[1] == []


def test_an_optional_input_into_a_required_op_input_is_a_located_error(diagnose):
    text = """\
        nngraph: 1
        name: t
        inputs:
          x: {shape: [batch, 4], dtype: float32}
          b: {shape: [batch, 4], dtype: float32, optional: true}
        graph:
          - {name: s, op: add, in: [x, b]}
        outputs: [s]
    """
    _, errors = diagnose(text)
    ((line, col, message, _),) = errors
    assert (line, col) == (7, "  - {name: s, op: add, in: [x, b]}".index("b]") + 1)  # at the 'b'
    assert message == ("node 's' (add): input 'xs[1]' is the optional graph input 'b', which may be absent, "
                       "and add needs it")


def test_an_optional_initial_state_of_an_lstm_stays_fine():
    from pathlib import Path

    g = load_spec(Path(__file__).resolve().parents[2] / "specs" / "char_lstm.yaml")
    assert g.inputs["h0"].optional and g.inputs["c0"].optional


@pytest.mark.parametrize("node, message", [
    ("{name: c, op: concat, in: [i, f], dim: 1}", "node 'c' (concat): inputs have different dtypes: int64 and float32"),
    ("{name: c, op: matmul, in: [f, i], transpose_b: true}", "node 'c' (matmul): inputs have different dtypes: float32 and int64"),
])
def test_ops_that_join_tensors_need_one_dtype(diagnose, node, message):
    """torch.cat and matmul would promote or refuse at run time; ONNX's Concat refuses mixed types."""
    text = ("nngraph: 1\nname: t\ninputs:\n  i: {shape: [batch, 4], dtype: int64}\n"
            "  f: {shape: [batch, 4], dtype: float32}\ngraph:\n  - " + node + "\noutputs: [c]\n")
    _, errors = diagnose(text)
    assert [(line, m) for line, _, m, _ in errors] == [(7, message)]


RECUR = """\
nngraph: 1
name: t
inputs:
  x: {shape: [batch, seq, 3], dtype: float32}
  h0: {shape: [batch, 5], dtype: float32, optional: true}
blocks:
  step:
    inputs: [x, h]
    nodes:
      - {name: cell, op: rnn_cell, in: {x: x, h0: h}, hidden: 5}
    outputs: {out: cell, h: cell}
graph:
  - {name: n, op: recur, in: [x, h0], cell: step, state_size: STATE}
outputs: {y: n.out}
"""


def test_a_loop_state_from_an_optional_input_is_left_to_the_loop(diagnose):
    """recur starts an unbound state from zeros at run time (the rnn_cell takes h0=None): no error."""
    assert diagnose(RECUR.replace("STATE", "{}"))[1] == []
