"""Every validation rule of the spec language: one failing spec each, its message, hint and line:col.

Each spec here has exactly one mistake, and each test asserts that it yields
exactly one error (no cascade of follow-up errors), where it is written and
what it says. Line and column are 1-based, as editors show them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nngraph.limits import Limits
from nngraph.spec import check_spec

HEAD = """\
nngraph: 1
name: t
vars: {d_model: 8, heads: 2}
inputs:
  x: {shape: [batch, 8], dtype: float32}
"""  # 5 lines: the graph starts on line 6


def one_error(diagnose, text: str, overrides: list[str] | None = None, **kw):
    """The single error of ``text``: (line, col, message, hint)."""
    _, errors = diagnose(text, overrides, **kw)
    assert len(errors) == 1, errors
    return errors[0]


def with_graph(nodes: str, outputs: str = "[a]", head: str = HEAD) -> str:
    return head + "graph:\n" + nodes + f"outputs: {outputs}\n"


# ----- document structure ---------------------------------------------------------------
def test_missing_format_version(diagnose):
    line, col, msg, hint = one_error(diagnose, "name: t\ninputs: {x: {shape: [1]}}\ngraph: [{name: a, op: relu, in: x}]\noutputs: [a]\n")
    assert (line, col, msg) == (1, 1, "missing format version 'nngraph'")
    assert hint == "add 'nngraph: 1' as the first line"


def test_unsupported_format_version_points_at_the_value(diagnose):
    line, col, msg, hint = one_error(diagnose, with_graph("  - {name: a, op: relu, in: x}\n", head=HEAD.replace("nngraph: 1", "nngraph: 2")))
    assert (line, col, msg, hint) == (1, 10, "unsupported format version 2", "supported versions: 1")


def test_unknown_top_level_key_suggests_the_closest(diagnose):
    line, col, msg, hint = one_error(diagnose, HEAD + "grahp: 1\n" + "graph: [{name: a, op: relu, in: x}]\noutputs: [a]\n")
    assert (line, col, msg) == (6, 1, "unknown top-level key 'grahp'")
    assert hint.startswith("did you mean 'graph'? top-level keys: blocks, dims, doc, expect, graph, imports")


def test_duplicate_yaml_keys_are_an_error_at_the_second_key(diagnose, spec_file):
    line, col, msg, hint = one_error(diagnose, with_graph("  - {name: a, op: relu, in: x, in: x}\n"))
    assert (line, col) == (7, 32)
    assert msg.startswith("duplicate key 'in' (first defined at ") and msg.endswith("spec.yaml:7:25)")
    assert "silently keep only the last value" in hint


def test_duplicate_top_level_section(diagnose):
    text = with_graph("  - {name: a, op: relu, in: x}\n") + "vars: {d_model: 9}\n"
    line, col, msg, _ = one_error(diagnose, text)
    assert (line, col) == (9, 1) and msg.startswith("duplicate key 'vars' (first defined at ")


# ----- ops and their parameters -----------------------------------------------------------
def test_unknown_op_suggests_the_closest_and_does_not_cascade(diagnose):
    # 'a' is also the output: the failed node must not be reported again as an unknown reference
    line, col, msg, hint = one_error(diagnose, with_graph("  - {name: a, op: lineer, in: x, out: 3}\n"))
    assert (line, col, msg) == (7, 19, "unknown op 'lineer' in node 'a'")
    assert hint.startswith("did you mean 'linear'? ")


def test_unknown_parameter_is_never_silently_ignored(diagnose):
    line, col, msg, hint = one_error(diagnose, with_graph("  - {name: a, op: linear, in: x, out: 3, bais: false}\n"))
    assert (line, col, msg) == (7, 42, "unknown parameter 'bais' for op 'linear' (node 'a')")
    assert hint == "did you mean 'bias'? parameters of linear: bias, out, parametrize, tie"


def test_parameter_of_an_op_without_parameters(diagnose):
    line, col, msg, hint = one_error(diagnose, with_graph("  - {name: a, op: relu, in: x, inplace: true}\n"))
    assert (line, col, msg, hint) == (7, 32, "unknown parameter 'inplace' for op 'relu' (node 'a')", "op 'relu' takes no parameters")


def test_missing_required_parameter_points_at_the_node(diagnose):
    line, col, msg, hint = one_error(diagnose, with_graph("  - {name: a, op: linear, in: x}\n"))
    assert (line, col, msg, hint) == (7, 5, "node 'a' (linear) is missing required parameter 'out'", "out: output features")


@pytest.mark.parametrize("value, col, problem", [
    ("ten", 39, "expected an integer, got string 'ten'"),
    ("2.5", 39, "expected an integer, got number 2.5"),
    ("[3]", 39, "expected an integer, got list [3]"),
    ("true", 39, "expected an integer, got bool True"),
    ("~", 39, "expected an integer, got null None"),
    ("0", 39, "must be >= 1, got 0"),
    ("'${d_model - 8}'", 39, "must be >= 1, got 0"),
])
def test_wrong_type_or_range_says_expected_and_got(diagnose, value, col, problem):
    line, c, msg, hint = one_error(diagnose, with_graph(f"  - {{name: a, op: linear, in: x, out: {value}}}\n"))
    assert (line, c, msg, hint) == (7, col, f"parameter 'out' of node 'a' (linear): {problem}", "output features")


def test_bad_enum_value_lists_the_choices(diagnose):
    line, col, msg, hint = one_error(diagnose, with_graph("  - {name: a, op: gelu, in: x, approximate: fast}\n"))
    assert (line, col, msg) == (7, 45, "parameter 'approximate' of node 'a' (gelu): expected one of none, tanh; got 'fast'")


def test_float_parameter_out_of_range(diagnose):
    line, col, msg, _ = one_error(diagnose, with_graph("  - {name: a, op: softplus, in: x, beta: -1.5}\n"))
    assert (line, col) == (7, 42)
    assert msg == "parameter 'beta' of node 'a' (softplus): must be >= 0.0, got -1.5"


def test_a_var_that_is_null_is_a_type_error_not_an_internal_crash(diagnose):
    text = with_graph("  - {name: a, op: linear, in: x, out: '${w}'}\n", head=HEAD.replace("heads: 2}", "heads: 2, w: ~}"))
    line, col, msg, _ = one_error(diagnose, text)
    assert (line, col, msg) == (7, 39, "parameter 'out' of node 'a' (linear): expected an integer, got null None")


# ----- names and references ----------------------------------------------------------------
def test_duplicate_node_name_in_the_graph(diagnose):
    line, col, msg, hint = one_error(diagnose, with_graph("  - {name: a, op: relu, in: x}\n  - {name: a, op: tanh, in: x}\n"))
    assert (line, col) == (8, 12)
    assert msg.startswith("duplicate node name 'a' (first defined at ") and msg.endswith("spec.yaml:7:12)")
    assert hint == "every node in a graph or block needs a unique name"


def test_duplicate_node_name_inside_a_block(diagnose):
    text = HEAD + """\
blocks:
  b:
    inputs: [x]
    nodes:
      - {name: a, op: relu, in: x}
      - {name: a, op: tanh, in: x}
    outputs: [a]
graph:
  - {name: u, block: b, in: x}
outputs: [u]
"""
    line, col, msg, _ = one_error(diagnose, text)
    assert (line, col) == (11, 16)
    assert msg.startswith("duplicate node name 'a' (first defined at ") and msg.endswith("spec.yaml:10:16)")


@pytest.mark.parametrize("name, msg", [
    ("fc.1", "invalid node name 'fc.1'"),
    ("1fc", "invalid node name '1fc'"),
    ("'fc-1'", "invalid node name 'fc-1'"),
    ("7", "invalid node name 7"),
])
def test_node_names_are_identifiers(diagnose, name, msg):
    line, col, m, _ = one_error(diagnose, with_graph(f"  - {{name: {name}, op: relu, in: x}}\n  - {{name: a, op: relu, in: x}}\n"))
    assert (line, col, m) == (7, 12, msg)


def test_dangling_reference_suggests_the_closest_name(diagnose):
    text = with_graph("  - {name: fc1, op: relu, in: x}\n  - {name: a, op: relu, in: fc2}\n", outputs="[a, fc1]")
    line, col, msg, hint = one_error(diagnose, text)
    assert (line, col, msg) == (8, 29, "unknown reference 'fc2' (in node 'a')")
    assert hint == "did you mean 'fc1'? names in scope: a, fc1, x"


def test_unknown_output_of_a_multi_output_node(diagnose):
    text = with_graph("  - {name: s, op: split, in: x, sizes: [4, 4], names: [l, r]}\n"
                      "  - {name: a, op: add, in: [s.l, s.bad]}\n", outputs="[a, s.r]")
    line, col, msg, hint = one_error(diagnose, text)
    assert (line, col, msg, hint) == (8, 34, "node 's' (split) has no output 'bad' (in node 'a')", "outputs: l, r")


def test_output_referencing_an_unknown_node(diagnose):
    line, col, msg, hint = one_error(diagnose, with_graph("  - {name: a, op: relu, in: x}\n", outputs="{y: a, z: b}"))
    assert (line, col, msg) == (8, 20, "output 'z': unknown reference 'b'")
    assert hint == "names in scope: a, x"


def test_graph_input_named_like_a_node(diagnose):
    line, col, msg, _ = one_error(diagnose, with_graph("  - {name: a, op: relu, in: x}\n  - {name: x, op: relu, in: a}\n", outputs="[x]"))
    assert (line, col, msg) == (5, 3, "graph input 'x' has the same name as a node")


# ----- unused values (warnings) -----------------------------------------------------------------
def test_unused_node_and_unused_input_are_warnings(spec_file):
    text = HEAD.replace("dtype: float32}", "dtype: float32}\n  extra: {shape: [batch], dtype: int64}") + \
        "graph:\n  - {name: a, op: relu, in: x}\n  - {name: b, op: tanh, in: x}\noutputs: [a]\n"
    graph, diag = check_spec(spec_file(text))
    found = sorted((d.severity, d.pos.line, d.pos.col, d.message, d.hint) for d in diag)
    assert found == [
        ("warning", 6, 3, "graph input 'extra' is never used", "remove it, or connect it"),
        ("warning", 9, 5, "node 'b' is never used", "remove it, or list it under outputs"),
    ]
    assert graph is not None and graph.nodes["b"].out is not None  # warnings do not stop inference


# ----- graph structure -----------------------------------------------------------------------
def test_cycle_is_reported_with_its_path(diagnose):
    text = with_graph("  - {name: a, op: relu, in: b}\n  - {name: b, op: relu, in: a}\n", outputs="[b]")
    line, col, msg, hint = one_error(diagnose, text)
    assert (line, col, msg) == (7, 5, "cycle in the graph: a -> b -> a")
    assert hint.startswith("a node cannot depend on its own output")


def test_self_loop_is_a_cycle(diagnose):
    line, col, msg, _ = one_error(diagnose, with_graph("  - {name: a, op: add, in: [x, a]}\n"))
    assert (line, col, msg) == (7, 5, "cycle in the graph: a -> a")


def test_too_many_inputs(diagnose):
    line, col, msg, hint = one_error(diagnose, with_graph("  - {name: a, op: relu, in: [x, x]}\n"))
    assert (line, col, msg, hint) == (7, 33, "too many inputs for node 'a': op 'relu' takes 1 (x), got 2", "remove the extra input")


def test_missing_input(diagnose):
    line, col, msg, _ = one_error(diagnose, with_graph("  - {name: a, op: matmul, in: [x]}\n"))
    assert (line, col, msg) == (7, 31, "node 'a' is missing input(s) b: op 'matmul' takes 2 required input(s) (a, b), got 1")


def test_node_without_in(diagnose):
    line, col, msg, _ = one_error(diagnose, with_graph("  - {name: a, op: relu}\n"))
    assert (line, col, msg) == (7, 5, "node 'a' is missing input(s) x: op 'relu' takes 1 required input(s) (x), got 0")


def test_unknown_named_input(diagnose):
    line, col, msg, hint = one_error(diagnose, with_graph("  - {name: a, op: matmul, in: {a: x, c: x}}\n"))
    assert (line, col) == (7, 41)
    assert msg == "unknown input 'c' for node 'a'"
    assert hint == "inputs: a, b"


# ----- blocks ----------------------------------------------------------------------------------
BLOCK = HEAD + """\
blocks:
  dense:
    inputs: [x]
    params: {width: 4}
    nodes:
      - {name: fc, op: linear, in: x, out: "${width}"}
    outputs: [fc]
graph:
"""  # 13 lines: the graph's first node is line 14


def test_unknown_block_suggests_the_closest(diagnose):
    line, col, msg, hint = one_error(diagnose, BLOCK + "  - {name: u, block: dens, in: x}\noutputs: [u]\n")
    assert (line, col, msg, hint) == (14, 22, "unknown block 'dens' in node 'u'", "did you mean 'dense'? defined blocks: dense")


def test_unknown_block_when_none_are_defined(diagnose):
    line, col, msg, hint = one_error(diagnose, with_graph("  - {name: u, block: dense, in: x}\n", outputs="[u]"))
    assert (line, col, msg, hint) == (7, 22, "unknown block 'dense' in node 'u'", "defined blocks: none")


def test_unknown_block_parameter_in_with(diagnose):
    line, col, msg, hint = one_error(diagnose, BLOCK + "  - {name: u, block: dense, in: x, with: {widht: 3}}\noutputs: [u]\n")
    assert (line, col, msg, hint) == (14, 43, "block 'dense' has no parameter 'widht'", "did you mean 'width'? parameters of dense: width")


def test_block_parameter_written_beside_block_instead_of_under_with(diagnose):
    line, col, msg, hint = one_error(diagnose, BLOCK + "  - {name: u, block: dense, in: x, width: 3}\noutputs: [u]\n")
    assert (line, col, msg) == (14, 36, "unknown key 'width' in block use 'u'")
    assert hint.endswith("; block parameters go under 'with:'")


def test_block_without_outputs(diagnose):
    text = HEAD + "blocks:\n  b:\n    inputs: [x]\n    nodes: [{name: a, op: relu, in: x}]\ngraph:\n  - {name: u, block: b, in: x}\noutputs: [u]\n"
    line, col, msg, hint = one_error(diagnose, text)
    assert (line, col, msg) == (7, 3, "block 'b' has no 'outputs'")
    assert hint == "outputs: [out]  or  outputs: {y: node, state: lstm.h}"


def test_block_output_naming_an_unknown_node(diagnose):
    text = HEAD + "blocks:\n  b:\n    inputs: [x]\n    nodes: [{name: a, op: relu, in: x}]\n    outputs: [aa]\n" \
        "graph:\n  - {name: u, block: b, in: x}\noutputs: [u]\n"
    line, col, msg, hint = one_error(diagnose, text)
    assert (line, col, msg) == (10, 15, "unknown reference 'aa'")  # in the block's outputs, not at its users
    assert hint.startswith("did you mean 'a'?")


def test_directly_recursive_block(diagnose):
    text = HEAD + "blocks:\n  b:\n    inputs: [x]\n    nodes: [{name: a, block: b, in: x}]\n    outputs: [a]\n" \
        "graph:\n  - {name: u, block: b, in: x}\noutputs: [u]\n"
    line, col, msg, hint = one_error(diagnose, text)
    assert (line, col, msg) == (9, 30, "recursive block: b -> b")
    assert hint == "a block cannot use itself, directly or through another block"


def test_indirectly_recursive_blocks(diagnose):
    text = HEAD + """\
blocks:
  b:
    inputs: [x]
    nodes: [{name: a, block: c, in: x}]
    outputs: [a]
  c:
    inputs: [x]
    nodes: [{name: a, block: b, in: x}]
    outputs: [a]
graph:
  - {name: u, block: b, in: x}
outputs: [u]
"""
    line, col, msg, _ = one_error(diagnose, text)
    assert (line, col, msg) == (13, 30, "recursive block: b -> c -> b")


def test_too_many_inputs_for_a_block(diagnose):
    line, col, msg, _ = one_error(diagnose, BLOCK + "  - {name: u, block: dense, in: [x, x]}\noutputs: [u]\n")
    assert (line, col, msg) == (14, 37, "too many inputs for node 'u': block 'dense' takes 1 (x), got 2")


def test_missing_input_for_a_block(diagnose):
    line, col, msg, _ = one_error(diagnose, BLOCK + "  - {name: u, block: dense}\noutputs: [u]\n")
    assert (line, col, msg) == (14, 5, "node 'u' is missing input(s) x: block 'dense' takes 1 required input(s) (x), got 0")


@pytest.mark.parametrize("value, shown", [("-1", "-1"), ("-2", "-2"), ("2.5", "2.5"), ("two", "'two'"), ("true", "True"),
                                          ("'${heads - 3}'", "-1")])
def test_repeat_must_be_a_non_negative_integer(diagnose, value, shown):
    line, col, msg, _ = one_error(diagnose, BLOCK + f"  - {{name: u, block: dense, in: x, repeat: {value}}}\noutputs: [u]\n")
    assert (line, col, msg) == (14, 44, f"'repeat' must be a non-negative integer, got {shown}")


def test_repeat_over_the_limit(diagnose):
    line, col, msg, hint = one_error(diagnose, BLOCK + "  - {name: u, block: dense, in: x, repeat: 5000}\noutputs: [u]\n")
    assert (line, col, msg) == (14, 44, "repeat 5000 exceeds the limit of 1024")
    assert hint == "use fewer copies, or raise Limits(max_repeat=...) in the Python API"


def test_share_must_be_a_bool_or_an_earlier_use(diagnose):
    line, col, msg, _ = one_error(diagnose, BLOCK + "  - {name: u, block: dense, in: x, repeat: 2, share: yes please}\noutputs: [u]\n")
    assert (line, col, msg) == (14, 54, "'share' must be true, false or the name of an earlier use of block 'dense' "
                                        "in the same node list, got 'yes please'")


def test_a_mistake_inside_a_repeated_block_is_reported_once(diagnose):
    text = BLOCK.replace('out: "${width}"}', 'out: "${width}", bais: 1}') + "  - {name: u, block: dense, in: x, repeat: 6}\noutputs: [u]\n"
    line, col, msg, _ = one_error(diagnose, text)
    assert (line, col, msg) == (11, 56, "unknown parameter 'bais' for op 'linear' (node 'fc')")


# ----- symbolic shapes: reported at the node that causes them ---------------------------------
SHAPES = """\
nngraph: 1
name: shapes
inputs:
  x: {shape: [batch, 8], dtype: float32}
  y: {shape: [batch, 5], dtype: float32}
  m: {shape: [batch, 5, 3], dtype: float32}
  tok: {shape: [batch, seq], dtype: int64}
graph:
  - {name: use_all, op: concat, in: [x, y], dim: -1}
  - {name: emb, op: embedding, in: tok, num: 10, dim: 8}
  - {name: m2, op: relu, in: m}
"""  # the node under test is line 12


def shape_error(diagnose, node: str, outputs: str = "[use_all, emb, m2, bad]"):
    return one_error(diagnose, SHAPES + node + "\n" + f"outputs: {outputs}\n")


def test_matmul_inner_dims(diagnose):
    line, col, msg, hint = shape_error(diagnose, "  - {name: bad, op: matmul, in: [x, m]}")
    assert (line, col, msg) == (12, 5, "node 'bad' (matmul): inner dims of [batch, 8] @ [batch, 5, 3]: expected 8, got 5")
    assert hint.startswith("the last dim of a must equal the rows of b")


def test_add_broadcast_failure(diagnose):
    line, col, msg, _ = shape_error(diagnose, "  - {name: bad, op: add, in: [x, y]}")
    assert (line, col, msg) == (12, 5, "node 'bad' (add): shapes [batch, 8] and [batch, 5] do not broadcast (dim -1: 8 vs 5)")


def test_concat_dims_differ(diagnose):
    line, col, msg, hint = shape_error(diagnose, "  - {name: bad, op: concat, in: [m2, m], dim: 1}\n"
                                       "  - {name: t, op: transpose, in: m, dim0: 1, dim1: 2}\n"
                                       "  - {name: bad2, op: concat, in: [m, t], dim: 1}", outputs="[use_all, emb, bad, bad2]")
    assert (line, col, msg) == (14, 5, "node 'bad2' (concat): dim 2 differs: [batch, 5, 3] vs [batch, 3, 5]")
    assert hint == "only dim 1 (the concat dim) may differ"


def test_concat_ranks_differ(diagnose):
    line, col, msg, _ = shape_error(diagnose, "  - {name: bad, op: concat, in: [x, m], dim: -1}")
    assert (line, col, msg) == (12, 5, "node 'bad' (concat): inputs have different ranks: [batch, 8] and [batch, 5, 3]")


def test_reshape_element_count_points_at_the_shape(diagnose):
    text = "nngraph: 1\nname: r\ninputs:\n  x: {shape: [2, 8], dtype: float32}\ngraph:\n" \
        "  - {name: bad, op: reshape, in: x, shape: [3, 3]}\noutputs: [bad]\n"
    line, col, msg, hint = one_error(diagnose, text)
    assert (line, col, msg) == (6, 44, "node 'bad' (reshape): cannot reshape [2, 8] (16 elements) to [3, 3] (9)")
    assert hint == "element counts must match"


def test_int_tensor_into_linear(diagnose):
    line, col, msg, hint = shape_error(diagnose, "  - {name: bad, op: linear, in: tok, out: 4}")
    assert (line, col, msg) == (12, 5, "node 'bad' (linear): input must be a floating-point tensor, got int64")
    assert hint == "feed it through an embedding (for token ids) or cast it first"


def test_embedding_fed_floats(diagnose):
    line, col, msg, hint = shape_error(diagnose, "  - {name: bad, op: embedding, in: x, num: 10, dim: 4}")
    assert (line, col, msg) == (12, 5, "node 'bad' (embedding): token ids must be an integer tensor, got float32")
    assert hint == "declare the graph input with dtype: int64"


def test_a_shape_error_is_not_repeated_downstream(diagnose):
    line, col, msg, _ = shape_error(diagnose, "  - {name: bad0, op: linear, in: tok, out: 4}\n  - {name: bad, op: relu, in: bad0}")
    assert (line, col) == (12, 5) and msg.startswith("node 'bad0' (linear)")


def test_dtype_mismatch_in_add(diagnose):
    line, col, msg, _ = shape_error(diagnose, "  - {name: bad, op: add, in: [emb, tok]}")
    assert (line, col, msg) == (12, 5, "node 'bad' (add): inputs have different dtypes: float32 and int64")


# ----- expressions ---------------------------------------------------------------------------
def test_expression_with_an_unknown_var(diagnose):
    line, col, msg, hint = one_error(diagnose, with_graph("  - {name: a, op: linear, in: x, out: '${d_modle * 2}'}\n"))
    assert (line, col, msg) == (7, 39, "parameter 'out': unknown name 'd_modle' in expression")
    assert hint == "did you mean 'd_model'? defined names: d_model, heads"


def test_expression_in_a_block_sees_block_params_in_its_hint(diagnose):
    text = BLOCK.replace('"${width}"', '"${widht}"') + "  - {name: u, block: dense, in: x}\noutputs: [u]\n"
    line, col, msg, hint = one_error(diagnose, text)
    assert (line, col, msg) == (11, 44, "parameter 'out': unknown name 'widht' in expression")
    assert hint == "did you mean 'width'? defined names: d_model, heads, index, width"


@pytest.mark.parametrize("expr, problem", [
    ("d_model.real", "'Attribute' is not allowed in expressions"),
    ("__import__('os')", "call to '__import__' is not allowed"),
    ("[1, 2][0]", "'Subscript' is not allowed in expressions"),
    ("d_model +* 2", "invalid expression 'd_model +* 2': invalid syntax"),
    ("(lambda: 1)()", "call to 'this call' is not allowed"),
    ("d_model // 0", "division by zero"),
])
def test_disallowed_expression_syntax(diagnose, expr, problem):
    line, col, msg, _ = one_error(diagnose, with_graph(f"  - {{name: a, op: linear, in: x, out: \"${{{expr}}}\"}}\n"))
    assert (line, col, msg) == (7, 39, f"parameter 'out': {problem}")


def test_unterminated_expression(diagnose):
    line, col, msg, _ = one_error(diagnose, with_graph("  - {name: a, op: linear, in: x, out: '${d_model'}\n"))
    assert (line, col, msg) == (7, 39, "parameter 'out': unterminated expression in '${d_model'")


def test_cyclic_vars_are_one_error_naming_the_cycle(diagnose):
    head = HEAD.replace("vars: {d_model: 8, heads: 2}", "vars: {a: '${c + 1}', b: '${a}', c: '${b * 2}'}")
    line, col, msg, hint = one_error(diagnose, with_graph("  - {name: n, op: linear, in: x, out: '${a}'}\n", "[n]", head=head))
    assert (line, col, msg, hint) == (3, 11, "var 'a': cyclic vars: a -> c -> b -> a", "break the cycle between these vars")


def test_var_defined_by_itself(diagnose):
    head = HEAD.replace("heads: 2}", "heads: '${heads}'}")
    line, col, msg, _ = one_error(diagnose, with_graph("  - {name: a, op: relu, in: x}\n", head=head))
    assert (line, col, msg) == (3, 27, "var 'heads': var 'heads' refers to itself")


def test_invalid_var_name(diagnose):
    head = HEAD.replace("heads: 2}", "heads: 2, 2x: 1}")
    line, col, msg, _ = one_error(diagnose, with_graph("  - {name: a, op: relu, in: x}\n", head=head))
    assert (line, col, msg) == (3, 30, "invalid var name '2x'")


# ----- --set overrides -------------------------------------------------------------------------
def override_error(diagnose, override: str, text: str | None = None):
    graph, errors = diagnose(text or with_graph("  - {name: head, op: linear, in: x, out: '${d_model}'}\n", "[head]"), [override])
    assert len(errors) == 1, errors
    return errors[0]


def test_override_of_an_unknown_var_suggests_the_closest(diagnose, spec_file):
    path = spec_file(with_graph("  - {name: a, op: linear, in: x, out: '${d_model}'}\n"))
    _, diag = check_spec(path, ["d_modle=16"])
    [d] = list(diag)
    assert (str(d.pos), d.pos.line, d.pos.col) == ("--set d_modle=16", 0, 0)
    assert d.message == "unknown var 'd_modle'"
    assert d.hint == "did you mean 'd_model'? vars of this spec: d_model, heads"


@pytest.mark.parametrize("override, msg", [
    ("d_model", "override 'd_model' is not key=value"),
    ("=3", "override '=3' is not key=value"),
    ("graph.head=3", "graph overrides take the form graph.PATH.PARAM=value"),
    ("blocks.b=3", "block overrides take the form blocks.BLOCK.PARAM=value or blocks.BLOCK.NODE.PARAM=value"),
    ("blocks.b.n.p.q=3", "block overrides take the form blocks.BLOCK.PARAM=value or blocks.BLOCK.NODE.PARAM=value"),
    ("graph.head.name=b", "cannot override 'name' of a node"),
    ("model.x=1", "cannot override 'model.x'"),
])
def test_malformed_overrides(diagnose, override, msg):
    assert override_error(diagnose, override)[:3] == (0, 0, msg)


def test_override_of_a_param_of_a_missing_node(diagnose):
    line, col, msg, hint = override_error(diagnose, "graph.hed.out=3")
    assert (line, col, msg) == (0, 0, "'graph.hed.out' overrides nothing: no node, block use or block named 'graph.hed'")
    assert hint == "did you mean 'graph.head'? targets: graph.head"


def test_override_with_a_wrong_type_is_validated_like_the_file(diagnose):
    line, col, msg, _ = override_error(diagnose, "graph.head.out=abc")
    assert (line, col, msg) == (0, 0, "parameter 'out' of node 'head' (linear): expected an integer, got string 'abc'")


def test_override_of_an_unknown_param_is_reported(diagnose):
    line, col, msg, hint = override_error(diagnose, "graph.head.outt=3")
    assert (line, col, msg) == (0, 0, "unknown parameter 'outt' for op 'linear' (node 'head')")
    assert hint.startswith("did you mean 'out'?")


def test_override_value_with_bad_yaml(diagnose):
    line, col, msg, hint = override_error(diagnose, "d_model=[1")
    assert (line, col) == (0, 0)
    assert msg.startswith("value of override 'd_model=[1' is not valid: YAML syntax error")
    assert hint.startswith("quote it for the shell")


# ----- imports -------------------------------------------------------------------------------------
LIB = "nngraph: 1\nblocks:\n  dense:\n    inputs: [x]\n    nodes: [{name: a, op: relu, in: x}]\n    outputs: [a]\n"


def import_error(spec_file, imp: str, extra_files: dict[str, str] | None = None):
    text = HEAD + f"imports: [{imp}]\ngraph:\n  - {{name: u, block: dense, in: x}}\noutputs: [u]\n"
    path = spec_file(text, "proj/spec.yaml")
    for name, body in (extra_files or {}).items():
        target = path.parent / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body)
    _, diag = check_spec(path)
    errors = [(d.pos.line, d.pos.col, d.message, d.hint) for d in diag if d.severity == "error"]
    return path, errors


def test_absolute_import_path_is_refused(spec_file):
    _, errors = import_error(spec_file, "/etc/passwd")
    assert errors[0] == (6, 11, "import path '/etc/passwd' must be relative",
                         "import files from the spec's own directory tree, or the bundled library as std:NAME.yaml")
    assert errors[1][2] == "unknown block 'dense' in node 'u'" and len(errors) == 2


@pytest.mark.parametrize("imp", ["../outside.yaml", "lib/../../outside.yaml", "std:../../../etc/passwd"])
def test_import_escaping_the_tree_is_refused(spec_file, imp):
    _, errors = import_error(spec_file, imp, {"../outside.yaml": LIB})
    line, col, msg, hint = errors[0]
    assert (line, col, msg) == (6, 11, f"import path '{imp}' escapes the spec's directory")
    assert hint == "imports are confined to the spec's own tree and the bundled library (std:...)"


def test_symlink_pointing_outside_the_tree_is_refused(spec_file):
    path = spec_file(LIB, "outside.yaml")
    (path.parent / "proj" / "lib").mkdir(parents=True)
    os.symlink(path, path.parent / "proj" / "lib" / "link.yaml")
    _, errors = import_error(spec_file, "lib/link.yaml")
    assert errors[0][:3] == (6, 11, "import path 'lib/link.yaml' escapes the spec's directory")


def test_missing_import_file(spec_file):
    _, errors = import_error(spec_file, "lib/nope.yaml")
    assert errors[0] == (6, 11, "import 'lib/nope.yaml' not found", "check the path (relative to the spec file)")


def test_missing_std_library_file_lists_the_bundled_ones(spec_file):
    _, errors = import_error(spec_file, "std:transformr.yaml")
    line, col, msg, hint = errors[0]
    assert (line, col, msg) == (6, 11, "import 'std:transformr.yaml' not found")
    assert "transformer.yaml" in hint


def test_import_cycle_is_reported_in_the_file_that_closes_it(spec_file):
    path, errors = import_error(spec_file, "lib/a.yaml", {
        "lib/a.yaml": "nngraph: 1\nimports: [b.yaml]\nblocks: {}\n",
        "lib/b.yaml": "nngraph: 1\nimports: [a.yaml]\nblocks: {}\n",
    })
    assert errors[0][:3] == (2, 11, "import cycle or chain too deep at 'a.yaml'")
    assert errors[0][3] == "a library cannot import itself"


def test_error_inside_an_imported_file_names_that_file(spec_file):
    path = spec_file(HEAD + "imports: [lib/blocks.yaml]\ngraph:\n  - {name: u, block: dense, in: x}\noutputs: [u]\n", "proj/spec.yaml")
    (path.parent / "lib").mkdir()
    (path.parent / "lib" / "blocks.yaml").write_text(LIB.replace("op: relu", "op: rellu"))
    _, diag = check_spec(path)
    [d] = [d for d in diag if d.severity == "error"]
    assert d.pos.file.endswith(os.path.join("lib", "blocks.yaml"))
    assert (d.pos.line, d.pos.col, d.message) == (5, 27, "unknown op 'rellu' in node 'a'")


# ----- size limits ---------------------------------------------------------------------------------
def test_absurd_linear_is_refused_with_its_parameter_count(diagnose):
    text = with_graph("  - {name: a, op: linear, in: x, out: 1000000}\n  - {name: b, op: linear, in: a, out: 1000000}\n", outputs="[b]")
    line, col, msg, hint = one_error(diagnose, text)
    assert (line, col) == (8, 5)
    assert msg == "node 'b' would have 1,000,001,000,000 parameters, more than the limit of 20,000,000,000"
    assert hint.startswith("refused before allocating anything")


def test_parameter_limit_is_configurable(spec_file):
    path = spec_file(with_graph("  - {name: a, op: linear, in: x, out: 100}\n"))
    _, diag = check_spec(path, [], Limits(max_params=500))
    [d] = list(diag)
    assert (d.pos.line, d.pos.col, d.message) == (7, 5, "node 'a' would have 900 parameters, more than the limit of 500")
    graph, diag = check_spec(path, [], Limits(max_params=900))
    assert not list(diag) and graph.total_params == 900


def test_model_total_over_the_limit_points_at_the_file(spec_file):
    path = spec_file(with_graph("  - {name: a, op: linear, in: x, out: 40}\n  - {name: b, op: linear, in: a, out: 40}\n", outputs="[b]"))
    _, diag = check_spec(path, [], Limits(max_params=1999))
    [d] = list(diag)  # each node is under the limit (360 and 1,640), their total is not
    assert (d.pos.line, d.pos.col) == (1, 1)
    assert d.message == "the model would have 2,000 parameters, more than the limit of 1,999"


def test_input_dim_over_the_limit(diagnose):
    head = HEAD.replace("[batch, 8]", "[batch, 1000000000000]")
    line, col, msg, _ = one_error(diagnose, with_graph("  - {name: a, op: relu, in: x}\n", head=head))
    assert (line, col, msg) == (5, 22, "dim 1 of input 'x' is 1,000,000,000,000, more than the limit of 2,147,483,647")


# ----- all errors in one run -------------------------------------------------------------------------
def test_every_independent_mistake_is_reported_in_one_run(diagnose):
    text = HEAD + """\
graph:
  - {name: a, op: lineer, in: x, out: 4}
  - {name: b, op: linear, in: x, out: 4, bais: false}
  - {name: c, op: relu, in: xx}
  - {name: d, op: linear, in: x, out: "${heads * 0}"}
outputs: [a, b, c, d]
"""
    _, errors = diagnose(text)
    assert [(line, col, msg) for line, col, msg, _ in errors] == [
        (7, 19, "unknown op 'lineer' in node 'a'"),
        (8, 42, "unknown parameter 'bais' for op 'linear' (node 'b')"),
        (10, 39, "parameter 'out' of node 'd' (linear): must be >= 1, got 0"),
        (9, 29, "unknown reference 'xx' (in node 'c')"),
    ]


# ----- malformed sections: one error each, never an exception ---------------------------------------
def test_graph_that_is_not_a_list(diagnose):
    line, col, msg, hint = one_error(diagnose, HEAD + "graph: {a: {op: relu, in: x}}\noutputs: [a]\n")
    assert (line, col, msg) == (6, 8, "expected a list of nodes, got Map")
    assert hint.startswith("write nodes as a YAML list")


def test_name_that_is_not_a_string(diagnose):
    line, col, msg, _ = one_error(diagnose, with_graph("  - {name: a, op: relu, in: x}\n", head=HEAD.replace("name: t", "name: {a: 1}")))
    assert (line, col, msg) == (2, 7, "'name' must be a string, got {'a': 1}")


def test_vars_that_are_not_a_mapping(diagnose):
    line, col, msg, _ = one_error(diagnose, with_graph("  - {name: a, op: relu, in: x}\n", head=HEAD.replace("vars: {d_model: 8, heads: 2}", "vars: [1, 2]")))
    assert (line, col, msg) == (3, 7, "'vars' must be a mapping of name -> value")


def test_block_inputs_that_are_not_a_list_do_not_cascade(diagnose):
    text = HEAD + "blocks:\n  b:\n    inputs: {x: 1}\n    nodes: [{name: a, op: relu, in: x}]\n    outputs: [a]\n" \
        "graph:\n  - {name: u, block: b, in: x}\noutputs: [u]\n"
    line, col, msg, hint = one_error(diagnose, text)
    assert (line, col, msg, hint) == (8, 13, "'inputs' of block 'b' must be a list of names", "inputs: [x, mask?]")


@pytest.mark.parametrize("how", ["direct", "imported"])
def test_library_vars_that_are_not_a_mapping(spec_file, how):
    lib = spec_file("nngraph: 1\nvars: [1, 2]\nblocks:\n  b:\n    inputs: [x]\n    nodes: [{name: a, op: relu, in: x}]\n"
                    "    outputs: [a]\n", "lib.yaml")
    path = lib if how == "direct" else spec_file(HEAD + "imports: [lib.yaml]\ngraph:\n  - {name: u, block: b, in: x}\noutputs: [u]\n")
    _, diag = check_spec(path)
    [d] = list(diag)
    assert Path(d.pos.file).name == "lib.yaml"
    assert (d.pos.line, d.pos.col, d.message) == (2, 7, "'vars' must be a mapping of name -> value")
