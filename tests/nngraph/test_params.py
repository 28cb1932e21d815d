"""Parameter values against their declared kind and range: NaN and the infinities are never in range.

``nan < min`` is False, so a comparison alone lets NaN through; the one range check
(:func:`nngraph.params.range_problem`) and the finiteness walk (:func:`finite_problem`) serve op
parameters and ``train:`` keys alike, so each is refused at validate, at its line and column.
"""

from __future__ import annotations

import math

import pytest

from nngraph.params import finite_problem, range_problem

HEADER = """\
nngraph: 1
name: finite
inputs:
  x: {shape: [batch, seq, 16], dtype: float32}
"""


@pytest.mark.parametrize("value, lo, hi, problem", [
    (math.nan, 0.0, 1.0, "must be a finite number, got nan"),
    (math.inf, 0.0, None, "must be a finite number, got inf"),
    (-math.inf, None, None, "must be a finite number, got -inf"),
    (-1, 0, None, "must be >= 0, got -1"),
    (2.0, None, 1.0, "must be <= 1.0, got 2.0"),
    (0.5, 0.0, 1.0, None),
])
def test_range_problem_refuses_non_finite_numbers_whatever_the_bounds(value, lo, hi, problem):
    assert range_problem(value, lo, hi) == problem


def test_finite_problem_looks_inside_lists_and_mappings():
    assert finite_problem(1.5) is None
    assert finite_problem(math.nan) == "must be a finite number, got nan"
    assert finite_problem([1.0, [2.0, {"a": -math.inf}]]) == "must hold finite numbers only, got -inf"
    assert finite_problem({"type": "alibi", "n": [1, 2]}) is None


def _col(line: str, value: str) -> int:
    """1-based column of the last ``value`` written on ``line``."""
    return line.rindex(value) + 1


@pytest.mark.parametrize("node, value, message", [
    ("{name: a, op: attention, in: x, heads: 2, dropout: .nan}", ".nan",
     "parameter 'dropout' of node 'a' (attention): must be a finite number, got nan"),
    ("{name: a, op: moe, in: x, experts: 2, hidden: 8, capacity_factor: .inf}", ".inf",
     "parameter 'capacity_factor' of node 'a' (moe): must be a finite number, got inf"),
    ("{name: a, op: layer_norm, in: x, eps: -.inf}", "-.inf",
     "parameter 'eps' of node 'a' (layer_norm): must be a finite number, got -inf"),
])
def test_non_finite_op_parameters_are_refused_at_validate(diagnose, node, value, message):
    line = f"  - {node}"
    _, errors = diagnose(HEADER + f"graph:\n{line}\noutputs: [a]\n")
    assert [(n, c, m) for n, c, m, _ in errors] == [(6, _col(line, value), message)]


@pytest.mark.parametrize("train, value, message", [
    ("optimizer: {lr: .nan}", ".nan", "train.optimizer.lr must be a finite number, got nan"),
    ("grad_clip: .inf", ".inf", "train.grad_clip must be a finite number, got inf"),
    ("loss: {aux: {'*.aux_loss': .nan}}", "{'*", "train.loss.aux must hold finite numbers only, got nan"),
    ("optimizer: {betas: [0.9, .nan]}", "[", "train.optimizer.betas must hold finite numbers only, got nan"),
])
def test_non_finite_train_keys_are_refused_at_validate(diagnose, train, value, message):
    line = "  " + train
    _, errors = diagnose(HEADER + f"graph: [{{name: a, op: relu, in: x}}]\noutputs: [a]\ntrain:\n{line}\n")
    assert [(n, c, m) for n, c, m, _ in errors] == [(8, _col(line, value), message)]
    assert errors[0][3] == "write a finite number (YAML's .nan and .inf are not)"


def test_non_finite_numbers_from_set_are_refused_too(diagnose):
    _, errors = diagnose(HEADER + "graph: [{name: a, op: relu, in: x}]\noutputs: [a]\ntrain: {steps: 1}\n",
                         ["train.optimizer.lr=.inf"])
    assert [m for _, _, m, _ in errors] == ["train.optimizer.lr must be a finite number, got inf"]
