"""Kalman filter layer (state_space family), front end: output shapes, parameter counts, errors.

Counts are checked against the textbook layout written out here: F n², H m·n, B n·c, D m·c, and per
covariance the lower triangle of its Cholesky factor (n(n+1)/2 full, n diagonal), plus m₀ (n).
"""

from __future__ import annotations

import pytest

from _onenode import node_line, one_node, single_error, spec_text

Y = {"y": (["batch", "seq", 3], "float32")}
YU = {**Y, "u": (["batch", "seq", 2], "float32")}


def test_outputs_are_filtered_means_covariances_per_sequence_loglik_and_a_scalar_loss(diagnose):
    node = one_node(diagnose, "{name: n, op: kalman_filter, in: y, state_dim: 5}", Y)
    assert node.outputs["mean"].shape == ("batch", "seq", 5)
    assert node.outputs["cov"].shape == ("batch", "seq", 5, 5)
    assert node.outputs["log_likelihood"].shape == ("batch",)
    assert node.outputs["nll"].shape == ()


@pytest.mark.parametrize("extra, inputs, expected", [
    ("", Y, 25 + 15 + 15 + 6 + 15 + 5),                          # F, H, Q, R, P0 full, m0
    ("covariance: diagonal", Y, 25 + 15 + 5 + 3 + 5 + 5),
    ("", YU, 25 + 15 + 10 + 6 + 15 + 6 + 15 + 5),                # + B [5, 2], D [3, 2]
    ("feedthrough: false", YU, 25 + 15 + 10 + 15 + 6 + 15 + 5),
    ("fixed: [F, H]", Y, 15 + 6 + 15 + 5),
    ("fixed: [Q, R, init]", YU, 25 + 15 + 10 + 6),
])
def test_parameter_count_is_the_textbook_layout_minus_fixed_matrices(diagnose, extra, inputs, expected):
    sep = ", " if extra else ""
    connect = "{y: y, u: u}" if "u" in inputs else "y"
    node = one_node(diagnose, f"{{name: n, op: kalman_filter, in: {connect}, state_dim: 5{sep}{extra}}}", inputs)
    assert node.n_params == expected


def test_the_seed_spec_counts_63_learnable_values(diagnose):
    from nngraph import load_spec
    from pathlib import Path

    graph = load_spec(Path(__file__).resolve().parents[3] / "specs" / "seeds" / "kalman_filter.yaml")
    # F 16, H 8, B 8, D 4, Q 10, R 3, P0 10, m0 4
    assert graph.total_params == 63


@pytest.mark.parametrize("node, inputs, token, message", [
    ("{name: n, op: kalman_filter, in: y, state_dim: 4}", {"y": (["batch", 3], "float32")}, "y, state_dim",
     "node 'n' (kalman_filter): y must be [batch, seq, obs_dim], got rank 2 [batch, 3]"),
    ("{name: n, op: kalman_filter, in: y, state_dim: 4}", {"y": (["batch", "seq", 3], "int64")}, "y, state_dim",
     "node 'n' (kalman_filter): y must be a floating-point tensor, got int64"),
    ("{name: n, op: kalman_filter, in: {y: y, u: u}, state_dim: 4}",
     {"y": (["batch", 5, 3], "float32"), "u": (["batch", 7, 2], "float32")}, "u}",
     "node 'n' (kalman_filter): u must be [batch, seq, control_dim] like y's [batch, 5], got [batch, 7, 2]"),
    ("{name: n, op: kalman_filter, in: {y: y, mask: k}, state_dim: 4}",
     {"y": (["batch", "seq", 3], "float32"), "k": (["batch", "seq", 1], "float32")}, "k}",
     "node 'n' (kalman_filter): mask must be [batch, seq] like y's [batch, seq], got [batch, seq, 1]"),
    ("{name: n, op: kalman_filter, in: y, state_dim: 4, fixed: [B]}", Y, "[B]",
     "node 'n' (kalman_filter): 'B' is in fixed but there are no controls u"),
    ("{name: n, op: kalman_filter, in: y, state_dim: 4, fixed: [A]}", Y, "[A]",
     "parameter 'fixed' of node 'n' (kalman_filter): unknown matrix 'A': expected names from F, H, B, D, Q, R, init"),
])
def test_errors_point_at_the_offending_input_or_parameter(diagnose, node, inputs, token, message):
    got, want, msg, _ = single_error(diagnose, node, token, inputs)
    assert got == want and msg == message


def test_missing_state_dim_is_reported_at_the_node(diagnose):
    text = spec_text(Y, ["{name: n, op: kalman_filter, in: y}"])
    _, errors = diagnose(text)
    assert [(e[0], e[1], e[2]) for e in errors] == [
        (node_line(0, 1), 5, "node 'n' (kalman_filter) is missing required parameter 'state_dim'")]
