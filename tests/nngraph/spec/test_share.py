"""``share``: true ties the copies of a repeat; NAME reuses an earlier use's weights; anything else is an error.

``share: true`` on a use without ``repeat`` used to be silently ignored (two uses, twice the parameters).
"""

from __future__ import annotations

import pytest

BASE = """\
nngraph: 1
name: s
inputs:
  a: {shape: [batch, 8], dtype: float32}
  b: {shape: [batch, 4], dtype: float32}
blocks:
  enc:
    inputs: [x]
    params: {width: 6}
    nodes:
      - {name: fc, op: linear, in: x, out: "${width}"}
    outputs: [fc]
  other:
    inputs: [x]
    nodes:
      - {name: fc, op: linear, in: x, out: 6}
    outputs: [fc]
graph:
  - {name: enc_a, block: enc, in: a}
"""


def spec(second: str, outputs: str = "[enc_a, enc_b]") -> str:
    return BASE + f"  - {second}\noutputs: {outputs}\n"


def col(text: str, line: int, needle: str) -> int:
    return text.splitlines()[line - 1].index(needle) + 1


def test_share_names_an_earlier_use_and_counts_its_parameters_once(diagnose):
    graph, errors = diagnose(spec("{name: enc_b, block: enc, in: a, share: enc_a}"))
    assert errors == []
    assert graph.nodes["enc_b.fc"].shares_params_with == "enc_a.fc"
    assert graph.nodes["enc_b.fc"].n_params == 0 and graph.total_params == 8 * 6 + 6


def test_repeated_uses_share_copy_by_copy(diagnose):
    text = BASE.replace("{name: enc_a, block: enc, in: a}", "{name: enc_a, block: enc, in: a, repeat: 2, with: {width: 8}}")
    graph, errors = diagnose(text + "  - {name: enc_b, block: enc, in: a, repeat: 2, with: {width: 8}, share: enc_a}\n"
                                    "outputs: [enc_a, enc_b]\n")
    assert errors == []
    assert [graph.nodes[f"enc_b.{i}.fc"].shares_params_with for i in (0, 1)] == ["enc_a.0.fc", "enc_a.1.fc"]
    assert graph.total_params == 2 * (8 * 8 + 8)


def test_share_true_without_repeat_is_an_error_that_says_what_to_write(diagnose):
    text = spec("{name: enc_b, block: enc, in: a, share: true}")
    _, errors = diagnose(text)
    ((line, c, message, hint),) = errors
    assert (line, c) == (20, col(text, 20, "true"))
    assert message == "'share: true' shares weights among the copies of a repeat, and 'enc_b' has no 'repeat'"
    assert hint == ("to reuse the weights of another use of this block, name it: share: <that use's name>; "
                    "to share among copies, add repeat: N")


@pytest.mark.parametrize("second, message, hint", [
    ("{name: enc_b, block: enc, in: a, share: enc_c}",
     "'share' must be true, false or the name of an earlier use of block 'enc' in the same node list, got 'enc_c'",
     "did you mean 'enc_a'? earlier uses of enc: enc_a"),
    ("{name: enc_b, block: other, in: a, share: enc_a}",
     "'share' must be true, false or the name of an earlier use of block 'other' in the same node list, got 'enc_a' "
     "(a use of block 'enc')", "earlier uses of other: none"),
    ("{name: enc_b, block: enc, in: a, repeat: 2, share: enc_a}",
     "'enc_b' makes 2 copies of block 'enc' and 'enc_a' 1: they cannot share weights", "give both the same repeat"),
    ("{name: enc_b, block: enc, in: b, share: enc_a}",
     "node 'enc_b.fc' (linear) cannot share the weights of 'enc_a.fc': it needs 30 parameters, 'enc_a.fc' has 54 "
     "(inputs [batch, 4] against [batch, 8])",
     "shared uses need inputs and block parameters that give the same weight sizes"),
    ("{name: enc_b, block: enc, in: a, with: {width: 3}, share: enc_a}",
     "node 'enc_b.fc' (linear) cannot share the weights of 'enc_a.fc': it needs 27 parameters, 'enc_a.fc' has 54 "
     "(inputs [batch, 8] against [batch, 8])",
     "shared uses need inputs and block parameters that give the same weight sizes"),
])
def test_a_share_that_cannot_hold_is_a_located_error(diagnose, second, message, hint):
    text = spec(second)
    _, errors = diagnose(text)
    ((line, c, got, got_hint),) = errors
    assert (line, c) == (20, col(text, 20, "share: ") + 7)
    assert (got, got_hint) == (message, hint)


def test_copies_whose_sizes_depend_on_the_index_cannot_share(diagnose):
    """Validated ok before, with shapes the shared module could not produce ([batch, 9] from an 8-wide layer)."""
    text = BASE.replace('out: "${width}"}', 'out: "${width + index}"}').replace(
        "{name: enc_a, block: enc, in: a}", "{name: enc_a, block: enc, in: a, repeat: 2, share: true}")
    _, errors = diagnose(text + "outputs: [enc_a]\n")
    ((line, c, message, _),) = errors
    assert (line, c) == (19, col(text, 19, "true"))
    assert message == ("node 'enc_a.1.fc' (linear) cannot share the weights of 'enc_a.0.fc': it needs 49 parameters, "
                       "'enc_a.0.fc' has 54 (inputs [batch, 6] against [batch, 8])")
