"""--set overrides: vars, vars.NAME, graph.NODE.PARAM, train.KEY...; every override goes through validation."""

from __future__ import annotations

import pytest

from nngraph.spec import check_spec, load_spec
from nngraph.spec.overrides import parse_override

SPEC = """\
nngraph: 1
name: o
vars: {d_model: 64, heads: 8, hidden: "${4 * d_model}", layers: 2}
inputs:
  x: {shape: [batch, seq, "${d_model}"], dtype: float32}
blocks:
  layer:
    inputs: [x]
    nodes:
      - {name: attn, op: attention, in: x, heads: "${heads}"}
      - {name: res, op: add, in: [x, attn]}
    outputs: [res]
graph:
  - {name: body, block: layer, repeat: "${layers}", in: x}
  - {name: ffn, op: mlp, in: body, hidden: "${hidden}"}
  - {name: head, op: linear, in: ffn, out: 10}
outputs: [head]
train: {optimizer: {type: adamw, lr: 3.0e-4}}
"""


@pytest.fixture
def path(spec_file):
    return spec_file(SPEC)


def test_a_var_override_changes_every_use(path):
    base, g = load_spec(path), load_spec(path, ["d_model=32"])
    assert base.nodes["head"].out.shape == ("batch", "seq", 10)
    assert g.vars["d_model"] == 32
    assert g.nodes["body.0.attn"].out.shape == ("batch", "seq", 32)
    assert g.nodes["ffn"].params["hidden"] == 128  # a var defined from the overridden one follows it
    assert g.inputs["x"].type.shape == ("batch", "seq", 32)


def test_vars_dot_name_is_the_same_as_a_bare_name(path):
    assert load_spec(path, ["vars.layers=4"]).nodes.keys() == load_spec(path, ["layers=4"]).nodes.keys()
    assert "body.3.attn" in load_spec(path, ["layers=4"]).nodes


def test_overriding_a_derived_var_replaces_its_expression(path):
    assert load_spec(path, ["hidden=100"]).nodes["ffn"].params["hidden"] == 100


def test_later_overrides_win(path):
    assert load_spec(path, ["layers=3", "layers=1"]).vars["layers"] == 1


def test_graph_node_param_override(path):
    g = load_spec(path, ["graph.head.out=3", "graph.head.bias=false"])
    assert g.nodes["head"].params["out"] == 3 and g.nodes["head"].params["bias"] is False
    assert g.nodes["head"].n_params == 64 * 3


def test_graph_override_may_add_a_param_the_file_left_at_its_default(path):
    g = load_spec(path, ["graph.ffn.activation=silu"])
    assert g.nodes["ffn"].params["activation"] == "silu"


def test_graph_override_value_may_be_an_expression(path):
    assert load_spec(path, ["graph.head.out=${heads * 2}"]).nodes["head"].params["out"] == 16


def test_train_overrides_set_nested_keys_creating_mappings(path):
    g = load_spec(path, ["train.optimizer.lr=0.01", "train.schedule.warmup=100", "train.epochs=3"])
    assert g.train == {"optimizer": {"type": "adamw", "lr": 0.01}, "schedule": {"warmup": 100}, "epochs": 3}


@pytest.mark.parametrize("text, value", [
    ("a=512", 512), ("a=0.5", 0.5), ("a=true", True), ("a=[1, 2]", [1, 2]), ("a=gelu", "gelu"),
    ("a={k: 1}", {"k": 1}), ("a='007'", "007"), ("a=", ""), ("a=x=y", "x=y"),
])
def test_override_values_are_parsed_as_yaml(text, value):
    key, parsed, pos = parse_override(text)
    assert (key, parsed) == ("a", value)
    assert str(pos) == f"--set {text}"


def test_an_override_that_breaks_a_constraint_is_reported_where_the_constraint_is(path):
    # d_model % heads != 0: the attention shape rule rejects it, at the heads parameter of the block
    _, diag = check_spec(path, ["d_model=60"])
    errors = [(d.pos.line, d.pos.col, d.message) for d in diag if d.severity == "error"]
    assert errors == [(10, 51, "node 'body.0.attn' (attention): d_model 60 is not divisible by heads 8")]


def test_an_override_with_the_wrong_type_is_an_error_not_a_crash(path):
    _, diag = check_spec(path, ["layers=two"])
    [d] = [d for d in diag if d.severity == "error"]
    assert (d.pos.line, d.pos.col, d.message) == (14, 40, "'repeat' must be a non-negative integer, got 'two'")


def test_override_over_a_limit_is_refused(path):
    _, diag = check_spec(path, ["layers=100000"])
    [d] = list(diag)
    assert d.message == "repeat 100000 exceeds the limit of 1024"


def test_overrides_do_not_modify_the_file(path):
    before = path.read_text()
    load_spec(path, ["d_model=32", "graph.head.out=3"])
    assert path.read_text() == before
    assert load_spec(path).nodes["head"].params["out"] == 10


@pytest.mark.parametrize("text, value", [("a=1e-5", 1e-5), ("a=1E5", 1e5), ("a=[1e-3, 2e-3]", [1e-3, 2e-3])])
def test_override_values_take_yaml_1_2_numbers(text, value):
    assert parse_override(text)[1] == value


def test_a_norm_eps_written_as_1e_6_is_a_number_in_vars_and_in_set(spec_file):
    path = spec_file("""
        nngraph: 1
        name: eps
        vars: {eps: 1e-6}
        inputs: {x: {shape: [batch, 8], dtype: float32}}
        graph:
          - {name: norm, op: layer_norm, in: x, eps: "${eps}"}
        outputs: [norm]
        train: {optimizer: {type: adamw, lr: 3e-4}}
    """)
    assert load_spec(path).nodes["norm"].params["eps"] == 1e-6
    assert load_spec(path, ["eps=1e-5"]).nodes["norm"].params["eps"] == 1e-5
    assert load_spec(path, ["graph.norm.eps=2e-5"]).nodes["norm"].params["eps"] == 2e-5
    assert load_spec(path, ["train.optimizer.lr=1e-3"]).train["optimizer"]["lr"] == 1e-3
