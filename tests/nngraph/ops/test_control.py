"""Control-flow ops (recur, act) and the ops/params the recurrent seed systems need (locked_dropout, a cell's
weight_drop, linear parametrize: orthogonal): shapes, roles of the cell's inputs, counts against torch.nn, and
errors at the offending parameter with their line:col."""

from __future__ import annotations

import pytest
import torch
from torch import nn

CELL = """blocks:
  step:
    inputs: [x, memory, h, c]
    nodes:
      - {name: lstm, op: lstm_cell, in: {x: x, h0: h, c0: c}, hidden: 6}
      - {name: pool, op: reduce, in: memory, dim: 1}
      - {name: y, op: add, in: [lstm.h, pool]}
    outputs: {out: y, h: lstm.h, c: lstm.c}
"""
INPUTS = """inputs:
  x: {shape: [batch, seq, 4], dtype: float32}
  mem: {shape: [batch, src, 6], dtype: float32}
  h0: {shape: [batch, 6], dtype: float32}
"""


def spec(node: str, blocks: str = CELL, inputs: str = INPUTS, outputs: str = "{y: n.out}") -> str:
    return f"nngraph: 1\nname: t\n{inputs}{blocks}graph:\n  - {node}\noutputs: {outputs}\n"


def pos(text: str, token: str, after: str | None = None) -> tuple[int, int]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if after in line) if after else 0
    for i in range(start, len(lines)):
        if token in lines[i]:
            return i + 1, lines[i].index(token) + 1
    raise AssertionError(token)


def one_error(diagnose, text: str) -> tuple[tuple[int, int], str]:
    _, errors = diagnose(text)
    assert len(errors) == 1, errors
    return (errors[0][0], errors[0][1]), errors[0][2]


# ----- recur ------------------------------------------------------------------------------------------
def test_recur_stacks_per_step_outputs_and_returns_final_states_named_as_the_cell_outputs(diagnose):
    graph, errors = diagnose(spec("{name: n, op: recur, in: [x, mem], cell: step, state_size: {h: 6, c: 6}}",
                                  outputs="{y: n.out, h: n.h, c: n.c}"))
    assert errors == []
    node = graph.nodes["n"]
    assert list(node.outputs) == ["out", "h", "c"]
    assert node.outputs["out"].shape == ("batch", "seq", 6)
    assert node.outputs["h"].shape == node.outputs["c"].shape == ("batch", 6)
    assert node.n_params == sum(p.numel() for p in nn.LSTMCell(4, 6).parameters()) == 4 * 6 * (4 + 6) + 2 * 24


def test_recur_binds_inputs_by_name_and_initialises_a_state_from_an_input(diagnose):
    graph, errors = diagnose(spec("{name: n, op: recur, in: [x, h0, mem], bind: [x, h, memory], cell: step, "
                                  "state_size: {c: [6]}}"))
    assert errors == []
    assert graph.nodes["n"].outputs["out"].shape == ("batch", "seq", 6)


def test_recur_state_size_list_places_the_batch_dim(diagnose):
    cell = CELL.replace("{name: lstm, op: lstm_cell, in: {x: x, h0: h, c0: c}, hidden: 6}",
                        "{name: lstm, op: lstm_cell, in: {x: x, h0: h, c0: c}, hidden: 6}\n"
                        "      - {name: keep, op: identity, in: extra}").replace(
        "inputs: [x, memory, h, c]", "inputs: [x, memory, h, c, extra]").replace(
        "outputs: {out: y, h: lstm.h, c: lstm.c}", "outputs: {out: y, h: lstm.h, c: lstm.c, extra: keep}")
    graph, errors = diagnose(spec("{name: n, op: recur, in: [x, mem], cell: step, "
                                  "state_size: {h: 6, c: 6, extra: [2, batch, 3]}}", blocks=cell))
    assert errors == []
    assert graph.nodes["n"].outputs["extra"].shape == (2, "batch", 3)


@pytest.mark.parametrize("node,token,message", [
    ("{name: n, op: recur, in: [x, mem], cell: step, state_size: {h: 6}}", "{h: 6}",
     "node 'n' (recur): state 'c' has no initial value"),
    ("{name: n, op: recur, in: [x, mem], bind: [x], cell: step, state_size: {h: 6, c: 6}}", "[x],",
     "node 'n' (recur): bind names 1 cell input(s), 'in' gives 2 tensor(s)"),
    ("{name: n, op: recur, in: [x, mem], bind: [x, memroy], cell: step, state_size: {h: 6, c: 6}}", "[x, memroy]",
     "node 'n' (recur): bind: cell 'step' has no input 'memroy'; its inputs are x, memory, h, c"),
    ("{name: n, op: recur, in: [x, mem], cell: step, state_size: {h: 6, c: 6, q: 2}}", "{h: 6, c: 6, q",
     "node 'n' (recur): state_size names 'q', which is not a carried state of cell 'step' (states: h, c)"),
    ("{name: n, op: recur, in: [x, mem], cell: step, sequences: [h], state_size: {h: 6, c: 6}}", "[h]",
     "node 'n' (recur): sequence 'h' is not bound to an input: expected one of x, memory"),
    ("{name: n, op: recur, in: [x], cell: step, state_size: {h: 6, c: 6}}", "bind",
     None),
])
def test_recur_errors_point_at_the_parameter(diagnose, node, token, message):
    text = spec(node)
    if message is None:  # memory is neither bound nor optional: reported at bind (not given: at the node)
        where, got = one_error(diagnose, text)
        assert got == "node 'n' (recur): cell input 'memory' is not bound to any input"
        assert where == pos(text, "{name: n")
        return
    where, got = one_error(diagnose, text)
    assert got == message
    assert where == pos(text, token, after="graph:")


def test_recur_state_that_changes_shape_is_refused_at_the_cell(diagnose):
    blocks = """blocks:
  grow:
    inputs: [x, h]
    nodes:
      - {name: cat, op: concat, in: [x, h], dim: -1}
    outputs: {h: cat}
"""
    text = spec("{name: n, op: recur, in: x, cell: grow, state_size: {h: 6}}", blocks=blocks, outputs="{h: n.h}")
    where, got = one_error(diagnose, text)
    assert got == ("node 'n' (recur): state 'h': the cell takes float32[batch, 6] but returns float32[batch, 10]")
    assert where == pos(text, "grow,", after="graph:")


def test_recur_sequences_must_share_the_time_dim(diagnose):
    blocks = """blocks:
  two:
    inputs: [a, b, h]
    nodes:
      - {name: s, op: add, in: [a, b, h]}
    outputs: {h: s}
"""
    inputs = "inputs:\n  a: {shape: [batch, 5, 3], dtype: float32}\n  b: {shape: [batch, 7, 3], dtype: float32}\n"
    text = spec("{name: n, op: recur, in: [a, b], cell: two, sequences: [a, b], state_size: {h: 3}}",
                blocks=blocks, inputs=inputs, outputs="{h: n.h}")
    where, got = one_error(diagnose, text)
    assert got == "node 'n' (recur): time dim of sequence 'b': expected 5, got 7"
    assert where == pos(text, "{name: n")


# ----- act --------------------------------------------------------------------------------------------
BODY = """blocks:
  layer:
    inputs: [x]
    nodes:
      - {name: fc, op: linear, in: x, out: 8}
      - {name: act, op: tanh, in: fc}
    outputs: [act]
"""
X8 = "inputs:\n  x: {shape: [batch, seq, 8], dtype: float32}\n"


def test_act_outputs_state_ponder_cost_and_steps_and_counts_the_halting_unit(diagnose):
    graph, errors = diagnose(spec("{name: n, op: act, in: x, body: layer, max_steps: 6, coordinates: true}",
                                  blocks=BODY, inputs=X8, outputs="{y: n.out, p: n.ponder_cost, s: n.steps}"))
    assert errors == []
    node = graph.nodes["n"]
    assert node.outputs["out"].shape == ("batch", "seq", 8)
    assert node.outputs["ponder_cost"].shape == () and node.outputs["steps"].shape == ("batch", "seq")
    assert node.n_params == (8 * 8 + 8) + (8 + 1)  # the body once (shared by every step) + halt [1, 8] + bias


@pytest.mark.parametrize("node,blocks,inputs,token,message", [
    ("{name: n, op: act, in: x, body: layer, max_steps: 4}", BODY.replace("out: 8", "out: 5"), X8, "layer,",
     "node 'n' (act): the body must map the state to the same shape and dtype: expected float32[batch, seq, 8], "
     "got float32[batch, seq, 5]"),
    ("{name: n, op: act, in: x, body: layer, max_steps: 4, coordinates: true}", BODY.replace("out: 8", "out: 7"),
     X8.replace("8]", "7]"), "true}", "node 'n' (act): coordinates need an even model dim (sin/cos pairs), got 7"),
    ("{name: n, op: act, in: x, body: layer, max_steps: 0}", BODY, X8, "0}",
     "parameter 'max_steps' of node 'n' (act): must be >= 1, got 0"),
])
def test_act_errors_point_at_the_parameter(diagnose, node, blocks, inputs, token, message):
    text = spec(node, blocks=blocks, inputs=inputs, outputs="{y: n.out}")
    where, got = one_error(diagnose, text)
    assert where == pos(text, token, after="graph:")
    assert got == message


# ----- locked_dropout, weight_drop, parametrize -------------------------------------------------------
def test_locked_dropout_keeps_the_shape_and_refuses_a_dim_out_of_range(diagnose):
    ok, errors = diagnose(spec("{name: n, op: locked_dropout, in: x, p: 0.3}", blocks="", outputs="[n]"))
    assert errors == [] and ok.nodes["n"].out.shape == ("batch", "seq", 4) and ok.nodes["n"].n_params == 0
    text = spec("{name: n, op: locked_dropout, in: x, p: 0.3, dim: 3}", blocks="", outputs="[n]")
    where, got = one_error(diagnose, text)
    assert got == "node 'n' (locked_dropout): dim 3 is out of range for an input of rank 3: expected -3..2"
    assert where == pos(text, "3}", after="graph:")


def test_a_cell_with_weight_drop_has_the_parameters_of_torch_cell(diagnose):
    graph, errors = diagnose(spec("{name: n, op: gru_cell, in: {x: h0, h0: h0}, hidden: 6, weight_drop: 0.5}",
                                  blocks="", outputs="[n]"))
    assert errors == [] and graph.nodes["n"].n_params == sum(p.numel() for p in nn.GRUCell(6, 6).parameters())
    text = spec("{name: n, op: lstm_cell, in: h0, hidden: 6, weight_drop: 1.0}", blocks="", outputs="[n.h]")
    where, got = one_error(diagnose, text)
    assert where == pos(text, "1.0", after="graph:") and "must be in [0, 1)" in got


def test_orthogonal_linear_counts_a_square_matrix_and_refuses_a_rectangular_one(diagnose):
    graph, errors = diagnose(spec("{name: n, op: linear, in: h0, out: 6, parametrize: orthogonal}",
                                  blocks="", outputs="[n]"))
    assert errors == [] and graph.nodes["n"].n_params == 6 * 6 + 6
    lin = nn.Linear(6, 6)
    torch.nn.utils.parametrizations.orthogonal(lin)
    assert sum(p.numel() for p in lin.parameters()) == 6 * 6 + 6  # the parametrization keeps the count
    text = spec("{name: n, op: linear, in: h0, out: 4, parametrize: orthogonal}", blocks="", outputs="[n]")
    where, got = one_error(diagnose, text)
    assert got == ("node 'n' (linear): an orthogonal weight must be square: expected out = 6 (the input features), "
                   "got 4")
    assert where == pos(text, "orthogonal}", after="graph:")
