"""Validate-time allocation estimates: weights and inputs that cannot fit in memory are refused with the number.

The bound is the machine's physical memory by default (``Limits.max_memory``, ``--max-memory GB``); these
tests set it, so they say the same on every machine.
"""

from __future__ import annotations

from dataclasses import replace

from nngraph.limits import DEFAULT_LIMITS, physical_memory

GB = 10**9
LIMITS = replace(DEFAULT_LIMITS, max_memory=16 * GB)


def _errors(diagnose, text: str, limits=LIMITS):
    _, errors = diagnose(text, limits=limits)
    return [(line, col, msg) for line, col, msg, _ in errors]


def test_the_default_bound_is_the_physical_memory():
    assert DEFAULT_LIMITS.max_memory == physical_memory() > 0


_BIG = """\
nngraph: 1
name: big
inputs:
  t: {shape: [batch], dtype: int64}
graph:
  - {name: e, op: embedding, in: t, num: 1400000000, dim: 4}
outputs: [e]
"""


def test_weights_that_cannot_fit_are_refused_at_the_largest_layer(diagnose):
    text = _BIG
    assert _errors(diagnose, text) == [(6, 5, "the model's 5,600,000,000 parameters need 22.4 GB as float32, more than "
                                              "the limit of 16.0 GB (--max-memory)")]
    assert _errors(diagnose, text, replace(LIMITS, max_memory=23 * GB)) == []


def test_an_input_of_a_trillion_elements_is_refused_at_the_input(diagnose):
    text = """\
        nngraph: 1
        name: wide
        inputs:
          x: {shape: [batch, 1000000, 1000000], dtype: float32}
        graph:
          - {name: r, op: relu, in: x}
        outputs: [r]
        """
    assert _errors(diagnose, text) == [(4, 3, "input 'x' [batch, 1000000, 1000000] needs 4,000.0 GB even with every "
                                              "symbolic dim 1, more than the limit of 16.0 GB (--max-memory)")]


def test_a_describing_command_warns_where_a_building_one_refuses(spec_file):
    """validate (a CI step on a small machine) describes the spec: over the bound is a warning saying who refuses."""
    from nngraph.spec import check_spec

    _, diag = check_spec(spec_file(_BIG), [], replace(LIMITS, memory_refuses=False))
    assert [(d.severity, d.pos.line, d.pos.col, d.message, d.hint) for d in diag] == [
        ("warning", 6, 5, "the model's 5,600,000,000 parameters need 22.4 GB as float32, more than the limit of "
                          "16.0 GB (--max-memory)",
         "the spec is valid as a description; compile, train, export and sample refuse it on this machine")]
    _, diag = check_spec(spec_file(_BIG), [], LIMITS)
    assert [(d.severity, d.hint) for d in diag] == [("error", "refused before allocating anything; check the sizes")]


def test_the_cli_limits_of_a_describing_command_only_warn():
    from nngraph.commands import limits

    assert limits().memory_refuses and not limits(builds=False).memory_refuses
    assert limits(max_memory_gb=16, builds=False).max_memory == 16 * GB
