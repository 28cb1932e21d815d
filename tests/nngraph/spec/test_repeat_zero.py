"""``repeat: 0`` on a block use: the identity on the block's first input (EfficientNet depth scaling can
round a stage to 0 blocks), refused at the ``repeat`` value when the block would change that input."""

from __future__ import annotations

import textwrap

import pytest
import torch

from nngraph.compilers.torch import build_module

SPEC = """\
nngraph: 1
name: r0
vars: {n: 0, width: 8}
inputs:
  x: {shape: [batch, 8], dtype: float32}
  skip: {shape: [batch, 8], dtype: float32}
blocks:
  res:
    inputs: [x, skip]
    nodes:
      - {name: fc, op: linear, in: x, out: "${width}"}
      - {name: add, op: add, in: [fc, skip]}
    outputs: [add]
graph:
  - {name: body, block: res, repeat: "${n}", in: {x: x, skip: skip}}
  - {name: head, op: linear, in: body, out: 3}
outputs: {y: head}
"""  # the block use is line 15, its repeat value at column 38


def errors_of(diagnose, text: str, overrides: list[str] | None = None):
    graph, errors = diagnose(text, overrides)
    return graph, [(line, col, msg) for line, col, msg, _ in errors]


def test_repeat_zero_is_the_identity_on_the_first_input_and_adds_no_parameters(diagnose):
    graph, errors = errors_of(diagnose, SPEC)
    assert errors == []
    body = graph.nodes["body"]
    assert body.op == "skipped_block" and body.n_params == 0
    assert [r.node for r in body.variadic] == ["x", "skip"]  # the second input is read (checked), not dropped
    assert graph.nodes["head"].inputs["x"].node == "body"
    assert graph.total_params == 8 * 3 + 3
    assert not any(name.startswith("body.") for name in graph.nodes)
    assert [(u.name, u.repeat) for u in graph.block_uses] == [("body", 0)]


def test_repeat_one_and_two_still_expand_copies(diagnose):
    graph, errors = errors_of(diagnose, SPEC, ["n=2"])
    assert errors == [] and graph.total_params == 2 * (8 * 8 + 8) + 27
    assert "body.1.add" in graph.nodes


def test_repeat_zero_of_a_block_that_changes_the_shape_is_an_error_at_the_repeat_value(diagnose, spec_file):
    _, errors = errors_of(diagnose, SPEC, ["width=4"])
    where = spec_file(SPEC)  # diagnose wrote the same text to this path
    assert errors == [(15, 38, f"node 'body' (skipped_block): in block 'res' (repeat: 0) at {where}:12:9: node 'add' "
                               "(add): shapes [batch, 4] and [batch, 8] do not broadcast (dim -1: 4 vs 8)")]
    # the block is still checked when no copy is made; with a block that is consistent but narrows x:
    text = SPEC.replace("- {name: add, op: add, in: [fc, skip]}", "- {name: add, op: tanh, in: fc}")
    _, errors = errors_of(diagnose, text, ["width=4"])
    assert errors == [(15, 38, "node 'body' (skipped_block): repeat: 0 makes this block use the identity on its first "
                               "input 'x', which needs block 'res' to keep that shape: expected [batch, 8] float32 "
                               "(the input), got [batch, 4] float32 (the block's output)")]


def test_repeat_zero_needs_a_single_output_block(diagnose):
    text = SPEC.replace("    outputs: [add]", "    outputs: [add, fc]")
    _, errors = errors_of(diagnose, text)
    assert errors == [(15, 38, "repeat: 0 makes 'body' the identity on the first input of block 'res', but the block "
                               "has 2 outputs")]


@pytest.mark.parametrize("value", ["-1", "'${n - 1}'"])
def test_negative_repeat_is_still_refused(diagnose, value):
    _, errors = errors_of(diagnose, SPEC.replace('repeat: "${n}"', f"repeat: {value}"))
    assert errors == [(15, 38, "'repeat' must be a non-negative integer, got -1")]


def test_torch_forward_of_repeat_zero_passes_the_input_through(spec_file):
    from nngraph import load_spec

    graph = load_spec(spec_file(textwrap.dedent(SPEC)))
    model = build_module(graph, seed=0)
    assert "body = x" in model.source
    x, skip = torch.randn(2, 8), torch.randn(2, 8)
    assert torch.equal(model(x, skip), model.head(x))
    assert sum(p.numel() for p in model.parameters()) == graph.total_params == 27
