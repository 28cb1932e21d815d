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


# ----- nodes and parameters inside block uses (issue 16 item 5) -----------------------------------------
LLAMA_SMALL = ["vocab=50", "d_model=16", "heads=2", "kv_heads=1", "layers=3"]


@pytest.fixture
def llama():
    from pathlib import Path

    return Path(__file__).resolve().parents[3] / "specs" / "llama_style.yaml"


def test_the_llama_ffn_width_of_every_layer_is_overridden(llama):
    """A checkpoint with another intermediate_size needs no copied spec: gated_mlp holds 3 * d_model * hidden."""
    base = load_spec(llama, LLAMA_SMALL)
    g = load_spec(llama, LLAMA_SMALL + ["graph.layers.*.mlp.hidden=40"])
    assert [g.nodes[f"layers.{i}.mlp"].params["hidden"] for i in range(3)] == [40, 40, 40]
    assert [g.nodes[f"layers.{i}.mlp"].n_params for i in range(3)] == [3 * 16 * 40] * 3
    assert g.total_params - base.total_params == 3 * 3 * 16 * (40 - base.nodes["layers.0.mlp"].params["hidden"])


def test_one_copy_of_a_repeated_block_is_overridden_by_its_index(llama):
    g = load_spec(llama, LLAMA_SMALL + ["graph.layers.1.mlp.hidden=40"])
    assert [g.nodes[f"layers.{i}.mlp"].params["hidden"] for i in range(3)] == [256, 40, 256]


def test_the_llama_norm_eps_is_overridden_in_the_block_definition_and_at_the_top(llama):
    g = load_spec(llama, LLAMA_SMALL + ["blocks.decoder_layer.input_layernorm.eps=1e-6", "graph.norm.eps=2e-6"])
    assert {g.nodes[f"layers.{i}.input_layernorm"].params["eps"] for i in range(3)} == {1e-6}
    assert {g.nodes[f"layers.{i}.post_attention_layernorm"].params["eps"] for i in range(3)} == {1e-5}
    assert g.nodes["norm"].params["eps"] == 2e-6


BLOCKS = """\
nngraph: 1
name: b
inputs:
  x: {shape: [batch, 8], dtype: float32}
blocks:
  dense:
    inputs: [x]
    params: {width: 4}
    nodes:
      - {name: fc, op: linear, in: x, out: "${width}"}
    outputs: [fc]
graph:
  - {name: enc, block: dense, in: x, with: {width: 6}}
  - {name: dec, block: dense, in: enc}
outputs: [dec]
"""


def test_a_block_parameter_of_one_use_is_overridden_as_its_with(spec_file):
    g = load_spec(spec_file(BLOCKS), ["graph.dec.width=5"])
    assert (g.nodes["enc.fc"].params["out"], g.nodes["dec.fc"].params["out"]) == (6, 5)


def test_a_block_parameter_default_is_overridden_and_with_still_wins(spec_file):
    g = load_spec(spec_file(BLOCKS), ["blocks.dense.width=3"])
    assert (g.nodes["enc.fc"].params["out"], g.nodes["dec.fc"].params["out"]) == (6, 3)


def test_a_node_of_a_block_use_is_reached_by_its_dotted_name(spec_file):
    g = load_spec(spec_file(BLOCKS), ["graph.enc.fc.bias=false"])
    assert (g.nodes["enc.fc"].params["bias"], g.nodes["dec.fc"].params["bias"]) == (False, True)


@pytest.mark.parametrize("override, message, hint", [
    ("graph.enc.fx.out=3", "'graph.enc.fx.out' overrides nothing: no node, block use or block named 'graph.enc.fx'",
     "did you mean 'graph.enc.fc'? targets: blocks.dense.fc, blocks.dense.width, graph.dec, graph.dec.fc, graph.enc, "
     "graph.enc.fc"),
    ("blocks.dens.width=3", "'blocks.dens.width' overrides nothing: no node, block use or block named 'blocks.dens'",
     "did you mean 'blocks.dense.fc'? targets: blocks.dense.fc, blocks.dense.width, graph.dec, graph.dec.fc, "
     "graph.enc, graph.enc.fc"),
    ("blocks.dense.widht=3", "block 'dense' has no parameter 'widht'", "did you mean 'width'? parameters of dense: width"),
    ("graph.enc.widht=3", "block 'dense' has no parameter 'widht'", "did you mean 'width'? parameters of dense: width"),
    ("graph.enc.fc.outt=3", "unknown parameter 'outt' for op 'linear' (node 'fc')",
     "did you mean 'out'? parameters of linear: bias, out, parametrize, tie"),
    ("graph.enc.fc.in=x", "cannot override 'in' of a node", "override parameters only"),
])
def test_a_wrong_target_is_an_error_at_the_set_that_lists_the_valid_ones(spec_file, override, message, hint):
    _, diag = check_spec(spec_file(BLOCKS), [override])
    (d,) = list(diag)
    assert (str(d.pos), d.message, d.hint) == (f"--set {override}", message, hint)


def test_an_overridden_value_inside_a_block_is_validated_and_reported_at_the_set(spec_file):
    _, diag = check_spec(spec_file(BLOCKS), ["graph.enc.fc.out=0"])
    (d,) = list(diag)
    assert str(d.pos) == "--set graph.enc.fc.out=0"
    assert d.message.startswith("parameter 'out' of node 'fc' (linear): ")


_RECUR = """nngraph: 1
name: rnn
inputs:
  x: {shape: [batch, seq, 3]}
blocks:
  step:
    inputs: [x, h]
    nodes:
      - {name: inp, op: linear, in: x, out: 8}
      - {name: rec, op: linear, in: h, out: 8, bias: false}
      - {name: pre, op: add, in: [inp, rec]}
      - {name: h_new, op: tanh, in: pre}
    outputs: {h: h_new}
graph:
  - {name: rnn, op: recur, in: x, cell: step, state_size: {h: 8}}
outputs: {h: rnn.h}
"""


@pytest.mark.parametrize("key", ["graph.rnn.cell.inp.bias", "blocks.step.inp.bias"])
def test_an_override_reaches_a_node_of_a_block_used_as_a_recur_cell(spec_file, key):
    path = spec_file(_RECUR)
    base = load_spec(path).total_params  # inp 3*8+8, rec 8*8
    assert base == 3 * 8 + 8 + 8 * 8
    assert load_spec(path, [f"{key}=false"]).total_params == base - 8  # inp loses its 8 biases


def test_a_cell_node_override_that_misses_lists_the_cell_paths(spec_file):
    _, diag = check_spec(spec_file(_RECUR), ["graph.rnn.cell.nope.bias=false"])
    (err,) = [d for d in diag if d.severity == "error"]
    assert "graph.rnn.cell.inp" in err.hint and "overrides nothing" in err.message
