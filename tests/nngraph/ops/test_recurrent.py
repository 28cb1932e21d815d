"""recurrent family: rnn/lstm/gru sequence layers and their cells — shapes, multi-outputs, torch-exact counts.

Oracles: torch.nn.RNN/LSTM/GRU (batch_first) and RNNCell/LSTMCell/GRUCell, run on real
tensors for the output/state shapes and counted through parameters().
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from _onenode import node_line, spec_text, value_col

TORCH = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
CELLS = {"rnn_cell": nn.RNNCell, "lstm_cell": nn.LSTMCell, "gru_cell": nn.GRUCell}


def torch_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


CONFIGS = [
    # (F, hidden, layers, bidirectional, bias)
    (10, 20, 1, False, True),
    (10, 20, 2, False, True),
    (7, 16, 3, True, True),
    (7, 16, 2, True, False),
    (300, 512, 2, True, True),
]


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("f, hidden, layers, bidir, bias", CONFIGS)
def test_sequence_layer_shapes_and_count_match_torch(diagnose, kind, f, hidden, layers, bidir, bias):
    node = (f"{{name: n, op: {kind}, in: x, hidden: {hidden}, layers: {layers}, "
            f"bidirectional: {str(bidir).lower()}, bias: {str(bias).lower()}}}")
    outputs = "{out: n, h: n.h" + (", c: n.c}" if kind == "lstm" else "}")
    graph, errors = diagnose(spec_text({"x": (["batch", "seq", f], "float32")}, [node], outputs))
    assert not errors, errors
    layer = TORCH[kind](f, hidden, num_layers=layers, bidirectional=bidir, bias=bias, batch_first=True)
    result = layer(torch.zeros(3, 5, f))
    out, state = result
    h = state[0] if kind == "lstm" else state
    n = graph.nodes["n"]
    assert n.n_params == torch_params(layer)
    assert n.outputs["out"].shape == ("batch", "seq", out.shape[2])
    assert n.outputs["h"].shape == (h.shape[0], "batch", h.shape[2])
    if kind == "lstm":
        assert n.outputs["c"].shape == (state[1].shape[0], "batch", state[1].shape[2])
    assert set(graph.outputs) == ({"out", "h", "c"} if kind == "lstm" else {"out", "h"})
    assert graph.outputs["h"].output == "h"


def test_lstm_count_by_formula():
    # 4 gates: per layer and direction 4H·in + 4H·H + 2·4H; layer 1 sees 2H inputs when bidirectional
    f, h = 128, 256
    layer0 = 2 * (4 * h * f + 4 * h * h + 8 * h)
    layer1 = 2 * (4 * h * 2 * h + 4 * h * h + 8 * h)
    assert layer0 + layer1 == torch_params(nn.LSTM(f, h, num_layers=2, bidirectional=True))


def test_rnn_relu_nonlinearity_is_accepted(diagnose):
    graph, errors = diagnose(spec_text({"x": (["batch", "seq", 4], "float32")},
                                       ["{name: n, op: rnn, in: x, hidden: 8, nonlinearity: relu}"]))
    assert not errors and graph.nodes["n"].params["nonlinearity"] == "relu"


def test_initial_states_as_graph_inputs_are_checked_and_accepted(diagnose):
    inputs = {"x": (["batch", "seq", 32], "float32"), "h0": ([4, "batch", 64], "float32"), "c0": ([4, "batch", 64], "float32")}
    graph, errors = diagnose(spec_text(inputs, ["{name: n, op: lstm, in: {x: x, h0: h0, c0: c0}, hidden: 64, layers: 2, "
                                                "bidirectional: true}"], "{out: n, h: n.h, c: n.c}"))
    assert not errors, errors
    assert graph.nodes["n"].outputs["h"].shape == (4, "batch", 64)


@pytest.mark.parametrize("kind", ["rnn_cell", "lstm_cell", "gru_cell"])
@pytest.mark.parametrize("bias", [True, False])
def test_cell_shapes_and_count_match_torch(diagnose, kind, bias):
    inputs = {"x": (["batch", 12], "float32"), "h": (["batch", 24], "float32")}
    wiring, outputs = "{x: x, h0: h}", "{h: n.h}"
    if kind == "lstm_cell":
        inputs["c"] = (["batch", 24], "float32")
        wiring, outputs = "{x: x, h0: h, c0: c}", "{h: n.h, c: n.c}"
    node = f"{{name: n, op: {kind}, in: {wiring}, hidden: 24, bias: {str(bias).lower()}}}"
    graph, errors = diagnose(spec_text(inputs, [node], outputs))
    assert not errors, errors
    cell = CELLS[kind](12, 24, bias=bias)
    result = cell(torch.zeros(3, 12))
    h = result[0] if kind == "lstm_cell" else result
    n = graph.nodes["n"]
    assert n.n_params == torch_params(cell)
    assert n.outputs["h"].shape == ("batch", h.shape[1])
    if kind == "lstm_cell":
        assert n.outputs["c"].shape == ("batch", result[1].shape[1])


def test_cell_state_is_optional(diagnose):
    graph, errors = diagnose(spec_text({"x": (["batch", 12], "float32")}, ["{name: n, op: gru_cell, in: x, hidden: 5}"]))
    assert not errors and graph.nodes["n"].outputs["h"].shape == ("batch", 5)


# ----- errors ------------------------------------------------------------
def diagnose_one(diagnose, inputs, node):
    text = spec_text(inputs, [node], "{out: n}")
    _, errors = diagnose(text)
    assert len(errors) == 1, errors
    return text, errors[0]


def test_h0_with_the_wrong_shape_points_at_the_h0_input(diagnose):
    inputs = {"x": (["batch", "seq", 8], "float32"), "s": ([1, "batch", 16], "float32")}
    text, (line, col, message, _) = diagnose_one(diagnose, inputs, "{name: n, op: gru, in: {x: x, h0: s}, hidden: 16, layers: 2}")
    assert message == ("node 'n' (gru): initial state h0 must have shape [layers·dirs, batch, hidden] = [2, batch, 16], "
                       "got [1, batch, 16]")
    assert (line, col) == (node_line(0, 2), value_col(text, node_line(0, 2), "h0"))


def test_c0_with_the_wrong_hidden_size_points_at_the_c0_input(diagnose):
    inputs = {"x": (["batch", "seq", 8], "float32"), "h": ([1, "batch", 16], "float32"), "c": ([1, "batch", 15], "float32")}
    text, (line, col, message, _) = diagnose_one(diagnose, inputs, "{name: n, op: lstm, in: {x: x, h0: h, c0: c}, hidden: 16}")
    assert "initial state c0 must have shape [layers·dirs, batch, hidden] = [1, batch, 16], got [1, batch, 15]" in message
    assert (line, col) == (node_line(0, 3), value_col(text, node_line(0, 3), "c0"))


def test_lstm_with_h0_but_no_c0_is_an_error_at_the_node(diagnose):
    inputs = {"x": (["batch", "seq", 8], "float32"), "h": ([1, "batch", 16], "float32")}
    text, (line, col, message, _) = diagnose_one(diagnose, inputs, "{name: n, op: lstm, in: {x: x, h0: h}, hidden: 16}")
    assert message == "node 'n' (lstm): an LSTM state needs both h0 and c0, got only h0"
    assert (line, col) == (node_line(0, 2), value_col(text, node_line(0, 2), None))


def test_state_dtype_must_match_the_input(diagnose):
    inputs = {"x": (["batch", "seq", 8], "float32"), "s": ([1, "batch", 16], "float16")}
    text, (line, col, message, _) = diagnose_one(diagnose, inputs, "{name: n, op: rnn, in: [x, s], hidden: 16}")
    assert "initial state h0 has dtype float16, the input x has float32" in message
    assert (line, col) == (node_line(0, 2), text.splitlines()[node_line(0, 2) - 1].index("s]") + 1)


def test_cell_state_with_the_wrong_shape_points_at_the_state(diagnose):
    inputs = {"x": (["batch", 8], "float32"), "s": (["batch", 9], "float32")}
    text, (line, col, message, _) = diagnose_one(diagnose, inputs, "{name: n, op: rnn_cell, in: {x: x, h0: s}, hidden: 16}")
    assert "initial state h0 must have shape [batch, hidden] = [batch, 16], got [batch, 9]" in message
    assert (line, col) == (node_line(0, 2), value_col(text, node_line(0, 2), "h0"))


def test_dropout_with_a_single_layer_is_an_error_at_dropout(diagnose):
    text, (line, col, message, _) = diagnose_one(diagnose, {"x": (["batch", "seq", 8], "float32")},
                                                 "{name: n, op: lstm, in: x, hidden: 16, dropout: 0.2}")
    assert "dropout 0.2 has no effect with layers: 1" in message
    assert (line, col) == (node_line(), value_col(text, node_line(), "dropout"))


def test_sequence_layer_on_a_rank_2_input_is_an_error_at_the_node(diagnose):
    text, (line, col, message, _) = diagnose_one(diagnose, {"x": (["batch", 8], "float32")},
                                                 "{name: n, op: gru, in: x, hidden: 16}")
    assert message == "node 'n' (gru): input x must have rank 3 [batch, time, features], got rank 2 [batch, 8]"
    assert (line, col) == (node_line(), value_col(text, node_line(), None))


def test_token_ids_fed_to_an_lstm_are_an_error(diagnose):
    text, (line, col, message, _) = diagnose_one(diagnose, {"x": (["batch", "seq", 1], "int64")},
                                                 "{name: n, op: lstm, in: x, hidden: 16}")
    assert "input must be a floating-point tensor, got int64" in message
    assert (line, col) == (node_line(), value_col(text, node_line(), None))


def test_referencing_a_missing_output_names_the_outputs(diagnose):
    text = spec_text({"x": (["batch", "seq", 8], "float32")}, ["{name: n, op: gru, in: x, hidden: 4}"], "{c: n.c}")
    _, errors = diagnose(text)
    assert len(errors) == 1 and "node 'n' (gru) has no output 'c'" in errors[0][2]
