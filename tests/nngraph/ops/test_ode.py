"""The ode op: shapes, the optional trajectory output, the func block's interface, counts, and errors at the parameter."""

from __future__ import annotations

import pytest

FUNC = """blocks:
  field:
    inputs: [h, t]
    nodes:
      - {name: ht, op: concat, in: [h, t], dim: -1}
      - {name: fc, op: linear, in: ht, out: 3}
    outputs: [fc]
"""
H3 = "inputs:\n  h0: {shape: [batch, 3], dtype: float32}\n"


def spec(node: str, blocks: str = FUNC, outputs: str = "{y: n.out}") -> str:
    return f"nngraph: 1\nname: t\n{H3}{blocks}graph:\n  - {node}\noutputs: {outputs}\n"


def pos(text: str, token: str) -> tuple[int, int]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("graph:"))
    for i in range(start, len(lines)):
        if token in lines[i]:
            return i + 1, lines[i].index(token) + 1
    raise AssertionError(token)


def test_ode_returns_the_final_state_and_the_trajectory_at_the_given_times(diagnose):
    graph, errors = diagnose(spec("{name: n, op: ode, in: h0, func: field, solver: rk4, steps: 8, t1: 2.0, "
                                  "times: [0.5, 1.0, 2.0]}", outputs="{y: n.out, path: n.trajectory}"))
    assert errors == []
    node = graph.nodes["n"]
    assert node.outputs["out"].shape == ("batch", 3)
    assert node.outputs["trajectory"].shape == ("batch", 3, 3)
    assert node.n_params == (3 + 1) * 3 + 3  # the func block's linear on [h; t]


def test_ode_without_times_has_one_output(diagnose):
    graph, errors = diagnose(spec("{name: n, op: ode, in: h0, func: field, solver: dopri5}", outputs="[n]"))
    assert errors == [] and list(graph.nodes["n"].outputs) == ["out"]


@pytest.mark.parametrize("node,token,message", [
    ("{name: n, op: ode, in: h0, func: field, steps: 8, t1: 2.0, times: [0.3]}", "[0.3]",
     "node 'n' (ode): time 0.3 is not on the rk4 grid t0 + k·0.25 (steps: 8)"),
    ("{name: n, op: ode, in: h0, func: field, solver: dopri5, times: [0.5, 1.5]}", "[0.5, 1.5]",
     "node 'n' (ode): time 1.5 is outside [0.0, 1.0]"),
    ("{name: n, op: ode, in: h0, func: field, solver: dopri5, times: [0.5, 0.25]}", "[0.5, 0.25]",
     "node 'n' (ode): times must be strictly increasing from t0 to t1, got [0.5, 0.25]"),
    ("{name: n, op: ode, in: h0, func: field, t0: 1.0, t1: 1.0}", "1.0}",
     "node 'n' (ode): t1 must differ from t0, got both 1.0"),
    # bounded work: these validated, then compile's forward check integrated for ever
    ("{name: n, op: ode, in: h0, func: field, steps: 1000000000}", "1000000000",
     "parameter 'steps' of node 'n' (ode): must be <= 100000, got 1000000000"),
    ("{name: n, op: ode, in: h0, func: field, solver: dopri5, t1: 1.0e+30}", "1.0e+30",
     "parameter 't1' of node 'n' (ode): must be <= 10000.0, got 1e+30"),
    ("{name: n, op: ode, in: h0, func: field, solver: dopri5, t0: -.inf}", "-.inf",
     "parameter 't0' of node 'n' (ode): must be a finite number, got -inf"),
])
def test_ode_errors_point_at_the_parameter(diagnose, node, token, message):
    text = spec(node, outputs="[n]")
    _, errors = diagnose(text)
    assert [(e[0], e[1], e[2]) for e in errors] == [(*pos(text, token), message)]


def test_the_func_block_must_return_the_state_shape(diagnose):
    text = spec("{name: n, op: ode, in: h0, func: field}", blocks=FUNC.replace("out: 3", "out: 2"), outputs="[n]")
    _, errors = diagnose(text)
    assert [(e[0], e[1], e[2]) for e in errors] == [(
        *pos(text, "field}"), "node 'n' (ode): the func block must return dh/dt with the state's shape and dtype: "
        "expected float32[batch, 3], got float32[batch, 2]")]


def test_the_func_block_inputs_are_h_and_t(diagnose):
    text = spec("{name: n, op: ode, in: h0, func: field}", blocks=FUNC.replace("[h, t]", "[h, s]").replace(
        "in: [h, t]", "in: [h, s]"), outputs="[n]")
    _, errors = diagnose(text)
    assert len(errors) == 1 and (errors[0][0], errors[0][1]) == pos(text, "field}")
    assert "must take inputs from (h, t), got (h, s)" in errors[0][2]

