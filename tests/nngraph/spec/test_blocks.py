"""Blocks: repeat naming and chaining, broadcast inputs, ${index}, shared weights, params, named outputs, nesting."""

from __future__ import annotations

import pytest

from nngraph.ir import Ref
from nngraph.spec import load_spec

HEAD = """\
nngraph: 1
name: blocks
vars: {d: 8, hidden: 16, heads: 4}
inputs:
  x: {shape: [batch, 8], dtype: float32}
  ctx: {shape: [batch, 8], dtype: float32}
"""


@pytest.fixture
def build(spec_file):
    """Load a spec (errors raise SpecError) and return its graph."""

    def run(text: str, overrides: list[str] | None = None):
        return load_spec(spec_file(text), overrides)

    return run


DENSE = HEAD + """\
blocks:
  dense:
    inputs: [x]
    params: {width: "${hidden}"}
    nodes:
      - {name: fc, op: linear, in: x, out: "${width}"}
      - {name: act, op: relu, in: fc}
    outputs: [act]
"""


def test_repeat_names_copies_by_index_and_records_the_use(build):
    g = build(DENSE + "graph:\n  - {name: body, block: dense, repeat: 3, in: x}\n  - {name: head, op: add, in: [body, ctx]}\n"
                      "outputs: [head]\n", ["hidden=8"])
    assert [n for n in g.nodes if n.startswith("body.")] == [
        "body.0.fc", "body.0.act", "body.1.fc", "body.1.act", "body.2.fc", "body.2.act"]
    assert g.nodes["body.2.fc"].scope == ("body", "2")
    assert g.nodes["body.1.fc"].block == "dense"
    [use] = g.block_uses
    assert (use.name, use.block, use.repeat, use.shared) == ("body", "dense", 3, False)


def test_repeat_chains_first_output_into_first_input(build):
    g = build(DENSE + "graph:\n  - {name: body, block: dense, repeat: 3, in: x}\n  - {name: head, op: add, in: [body, ctx]}\n"
                      "outputs: [head]\n", ["hidden=8"])
    assert g.nodes["body.0.fc"].inputs == {"x": Ref("x")}
    assert g.nodes["body.1.fc"].inputs == {"x": Ref("body.0.act")}
    assert g.nodes["body.2.fc"].inputs == {"x": Ref("body.1.act")}
    assert g.nodes["head"].variadic == [Ref("body.2.act"), Ref("ctx")]  # the use stands for the last copy
    assert g.nodes["body.0.fc"].out.shape == ("batch", 8)


def test_separate_weights_per_copy_are_counted_per_copy(build):
    g = build(DENSE + "graph:\n  - {name: body, block: dense, repeat: 3, in: x}\n  - {name: head, op: add, in: [body, ctx]}\n"
                      "outputs: [head]\n", ["hidden=8"])
    # 3 copies of linear(8 -> 8): 3 * (64 + 8)
    assert g.total_params == 216
    assert all(g.nodes[f"body.{i}.fc"].shares_params_with is None for i in range(3))


def test_extra_block_inputs_are_given_to_every_copy(build):
    text = HEAD + """\
blocks:
  mix:
    inputs: [h, context]
    nodes:
      - {name: sum, op: add, in: [h, context]}
    outputs: [sum]
graph:
  - {name: layers, block: mix, repeat: 3, in: [x, ctx]}
outputs: [layers]
"""
    g = build(text)
    assert g.nodes["layers.0.sum"].variadic == [Ref("x"), Ref("ctx")]
    assert g.nodes["layers.1.sum"].variadic == [Ref("layers.0.sum"), Ref("ctx")]
    assert g.nodes["layers.2.sum"].variadic == [Ref("layers.1.sum"), Ref("ctx")]


def test_extra_block_inputs_bound_by_name(build):
    text = HEAD + """\
blocks:
  mix:
    inputs: [h, context]
    nodes:
      - {name: sum, op: add, in: [h, context]}
    outputs: [sum]
graph:
  - {name: layers, block: mix, repeat: 2, in: {context: ctx, h: x}}
outputs: [layers]
"""
    g = build(text)
    assert g.nodes["layers.1.sum"].variadic == [Ref("layers.0.sum"), Ref("ctx")]


def test_index_is_the_copy_number_inside_a_repeated_block(build):
    text = HEAD + """\
blocks:
  grow:
    inputs: [x]
    nodes:
      - {name: fc, op: linear, in: x, out: "${8 * (index + 1)}"}
    outputs: [fc]
graph:
  - {name: body, block: grow, repeat: 3, in: x}
outputs: [body]
"""
    g = build(text.replace("  ctx: {shape: [batch, 8], dtype: float32}\n", ""))
    assert [g.nodes[f"body.{i}.fc"].params["out"] for i in range(3)] == [8, 16, 24]
    assert g.nodes["body.2.fc"].out.shape == ("batch", 24)
    # linear(8->8) + linear(8->16) + linear(16->24)
    assert g.total_params == (64 + 8) + (128 + 16) + (384 + 24)


def test_index_of_a_block_used_once_is_zero(build):
    text = HEAD.replace("  ctx: {shape: [batch, 8], dtype: float32}\n", "") + """\
blocks:
  grow:
    inputs: [x]
    nodes: [{name: fc, op: linear, in: x, out: "${index + 5}"}]
    outputs: [fc]
graph:
  - {name: once, block: grow, in: x}
outputs: [once]
"""
    assert build(text).nodes["once.fc"].params["out"] == 5


def test_share_ties_every_copy_to_the_first_and_counts_params_once(build):
    g = build(DENSE + "graph:\n  - {name: body, block: dense, repeat: 4, share: true, in: x}\n"
                      "  - {name: head, op: add, in: [body, ctx]}\noutputs: [head]\n", ["hidden=8"])
    assert g.nodes["body.0.fc"].shares_params_with is None
    assert [g.nodes[f"body.{i}.fc"].shares_params_with for i in (1, 2, 3)] == ["body.0.fc"] * 3
    assert [g.nodes[f"body.{i}.act"].shares_params_with for i in (1, 2, 3)] == ["body.0.act"] * 3
    assert [g.nodes[f"body.{i}.fc"].n_params for i in range(4)] == [72, 0, 0, 0]
    assert g.total_params == 72
    assert g.block_uses[0].shared is True


def test_block_param_default_and_with_override(build):
    g = build(DENSE + "graph:\n  - {name: a, block: dense, in: x}\n  - {name: b, block: dense, in: a, with: {width: 8}}\n"
                      "  - {name: head, op: add, in: [b, ctx]}\noutputs: [head]\n")
    assert g.nodes["a.fc"].params["out"] == 16  # default ${hidden}
    assert g.nodes["b.fc"].params["out"] == 8


def test_with_values_are_expressions_in_the_using_scope(build):
    g = build(DENSE + "graph:\n  - {name: a, block: dense, in: x, with: {width: '${d * 3}'}}\noutputs: [a]\n"
              .replace("outputs: [a]", "  - {name: head, op: linear, in: a, out: 8}\n  - {name: s, op: add, in: [head, ctx]}\noutputs: [s]"))
    assert g.nodes["a.fc"].params["out"] == 24


def test_param_named_like_an_outer_var_defaults_to_that_var(build):
    text = HEAD + """\
blocks:
  heads_block:
    inputs: [x]
    params: {heads: "${heads}"}
    nodes:
      - {name: fc, op: linear, in: x, out: "${heads * 2}"}
    outputs: [fc]
graph:
  - {name: a, block: heads_block, in: x}
  - {name: b, block: heads_block, in: ctx, with: {heads: 1}}
  - {name: c, op: concat, in: [a, b], dim: -1}
outputs: [c]
"""
    g = build(text)
    assert g.nodes["a.fc"].params["out"] == 8   # heads = outer heads = 4
    assert g.nodes["b.fc"].params["out"] == 2   # with: overrides it
    assert build(text, ["heads=3"]).nodes["a.fc"].params["out"] == 6  # and follows --set of the outer var


def test_named_block_outputs(build):
    text = HEAD + """\
blocks:
  enc:
    inputs: [x]
    nodes:
      - {name: fc, op: linear, in: x, out: 4}
      - {name: act, op: tanh, in: fc}
    outputs: {y: act, state: fc}
graph:
  - {name: e, block: enc, in: x}
  - {name: s, op: add, in: [e.state, e.y]}
  - {name: first, op: identity, in: e}
  - {name: c, op: linear, in: ctx, out: 4}
  - {name: out, op: add, in: [s, first, c]}
outputs: {out: out, state: e.state}
"""
    g = build(text)
    assert g.nodes["s"].variadic == [Ref("e.fc"), Ref("e.act")]
    assert g.nodes["first"].inputs == {"x": Ref("e.act")}  # a bare use is its first output
    assert g.outputs["state"] == Ref("e.fc")


def test_named_outputs_of_a_repeated_block_come_from_the_last_copy(build):
    text = HEAD + """\
blocks:
  enc:
    inputs: [x]
    nodes:
      - {name: fc, op: linear, in: x, out: 8}
      - {name: act, op: tanh, in: fc}
    outputs: {y: act, state: fc}
graph:
  - {name: e, block: enc, repeat: 3, in: x}
  - {name: out, op: add, in: [e.state, e.y, ctx]}
outputs: [out]
"""
    g = build(text)
    assert g.nodes["out"].variadic == [Ref("e.2.fc"), Ref("e.2.act"), Ref("ctx")]
    assert g.nodes["e.1.fc"].inputs == {"x": Ref("e.0.act")}  # chained through the first output, y


def test_block_output_can_be_an_output_of_a_multi_output_node(build):
    text = HEAD + """\
blocks:
  halves:
    inputs: [x]
    nodes:
      - {name: s, op: split, in: x, sizes: [4, 4], names: [lo, hi]}
    outputs: {lo: s.lo, hi: s.hi}
graph:
  - {name: h, block: halves, in: x}
  - {name: out, op: concat, in: [h.hi, h.lo, ctx], dim: -1}
outputs: [out]
"""
    g = build(text)
    assert g.nodes["out"].variadic == [Ref("h.s", "hi"), Ref("h.s", "lo"), Ref("ctx")]
    assert g.nodes["out"].out.shape == ("batch", 16)


def test_nested_blocks_are_named_by_their_path(build):
    text = HEAD + """\
blocks:
  inner:
    inputs: [x]
    nodes: [{name: fc, op: linear, in: x, out: 8}]
    outputs: [fc]
  outer:
    inputs: [x]
    nodes:
      - {name: pre, op: relu, in: x}
      - {name: stack, block: inner, repeat: 2, in: pre}
    outputs: [stack]
graph:
  - {name: net, block: outer, repeat: 2, in: x}
  - {name: out, op: add, in: [net, ctx]}
outputs: [out]
"""
    g = build(text)
    assert [n for n in g.nodes if n.startswith("net.")] == [
        "net.0.pre", "net.0.stack.0.fc", "net.0.stack.1.fc", "net.1.pre", "net.1.stack.0.fc", "net.1.stack.1.fc"]
    assert g.nodes["net.0.stack.1.fc"].inputs == {"x": Ref("net.0.stack.0.fc")}
    assert g.nodes["net.1.pre"].inputs == {"x": Ref("net.0.stack.1.fc")}
    assert g.nodes["out"].variadic[0] == Ref("net.1.stack.1.fc")
    assert g.total_params == 4 * (64 + 8)
    assert {(u.name, u.repeat) for u in g.block_uses} >= {("net", 2), ("net.0.stack", 2), ("net.1.stack", 2)}


def test_optional_block_input_may_stay_unbound(build):
    text = HEAD + """\
blocks:
  maybe:
    inputs: [x, extra?]
    nodes: [{name: act, op: relu, in: x}]
    outputs: [act]
graph:
  - {name: a, block: maybe, in: x}
  - {name: b, block: maybe, in: [ctx, a]}
outputs: [b]
"""
    g = build(text)
    assert g.nodes["b.act"].inputs == {"x": Ref("ctx")}


def test_block_nodes_see_outer_vars(build):
    text = HEAD + """\
blocks:
  b:
    inputs: [x]
    nodes: [{name: fc, op: linear, in: x, out: "${d * 2}"}]
    outputs: [fc]
graph:
  - {name: u, block: b, in: x}
  - {name: v, op: linear, in: ctx, out: 16}
  - {name: out, op: add, in: [u, v]}
outputs: [out]
"""
    assert build(text, ["d=8"]).nodes["u.fc"].params["out"] == 16
