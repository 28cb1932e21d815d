"""regularization family: dropout keeps the shape, has no parameters, and p must lie in [0, 1)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from _onenode import node_line, spec_text, value_col


def test_dropout_keeps_shape_and_dtype_and_has_no_parameters(diagnose):
    graph, errors = diagnose(spec_text({"x": (["batch", "seq", 64], "float16")}, ["{name: n, op: dropout, in: x, p: 0.1}"]))
    assert not errors
    node = graph.nodes["n"]
    assert node.outputs["out"].shape == ("batch", "seq", 64) and node.outputs["out"].dtype == "float16"
    assert node.n_params == sum(p.numel() for p in nn.Dropout(0.1).parameters()) == 0
    assert node.params["p"] == 0.1


def test_dropout_p_defaults_to_torch_default(diagnose):
    graph, _ = diagnose(spec_text({"x": (["batch", 8], "float32")}, ["{name: n, op: dropout, in: x}"]))
    assert graph.nodes["n"].params["p"] == nn.Dropout().p == 0.5


def test_dropout_p_zero_is_allowed(diagnose):
    _, errors = diagnose(spec_text({"x": (["batch", 8], "float32")}, ["{name: n, op: dropout, in: x, p: 0}"]))
    assert not errors


@pytest.mark.parametrize("value, fragment", [
    ("1.0", "must be in [0, 1), got 1.0 (p = 1 would zero everything)"),
    ("-0.1", "must be in [0, 1), got -0.1"),
    ("high", "expected a probability in [0, 1), got 'high'"),
])
def test_dropout_p_outside_0_1_is_an_error_at_p(diagnose, value, fragment):
    text = spec_text({"x": (["batch", 8], "float32")}, [f"{{name: n, op: dropout, in: x, p: {value}}}"])
    _, errors = diagnose(text)
    assert len(errors) == 1, errors
    line, col, message, _ = errors[0]
    assert message == f"parameter 'p' of node 'n' (dropout): {fragment}"
    assert (line, col) == (node_line(), value_col(text, node_line(), "p"))


def test_torch_agrees_that_p_1_is_allowed_only_by_torch_but_useless():
    # torch accepts p = 1 (all zeros); nngraph rejects it as a spec mistake, and rejects p > 1 like torch.
    assert torch.count_nonzero(nn.Dropout(1.0).train()(torch.ones(10))) == 0
    with pytest.raises(ValueError):
        nn.Dropout(1.5)


def test_dropout_of_integer_tensor_is_an_error_at_the_node(diagnose):
    text = spec_text({"x": (["batch", 8], "int64")}, ["{name: n, op: dropout, in: x}"])
    _, errors = diagnose(text)
    assert [(e[0], e[1]) for e in errors] == [(node_line(), value_col(text, node_line(), None))]
    assert "input must be a floating-point tensor, got int64" in errors[0][2]


def test_drop_path_keeps_shape_and_dtype_and_has_no_parameters(diagnose):
    graph, errors = diagnose(spec_text({"x": (["batch", "seq", 64], "float32")}, ["{name: n, op: drop_path, in: x, p: 0.1}"]))
    assert not errors
    node = graph.nodes["n"]
    assert node.outputs["out"].shape == ("batch", "seq", 64) and node.n_params == 0


def test_drop_path_p_of_one_is_an_error_at_p(diagnose):
    _, errors = diagnose(spec_text({"x": (["batch", 8], "float32")}, ["{name: n, op: drop_path, in: x, p: 1.0}"]))
    assert len(errors) == 1 and "must be in [0, 1), got 1.0" in errors[0][2]
