"""Several named networks in one spec (nngraph/spec/networks.py): each checked as a graph of its own, errors
at line:col, the union graph the other tools see, the JSON Schema, train.networks roles."""

from __future__ import annotations

import json

import jsonschema
import pytest

from nngraph.inspect import format_table, summarize
from nngraph.schema import json_schema
from nngraph.spec.networks import roles_of, select
from nngraph.yamlsrc import load_yaml_file

TWO = """\
nngraph: 1
name: pair
vars: {latent: 4, hidden: 8}
blocks:
  dense:
    inputs: [x]
    nodes:
      - {name: fc, op: linear, in: x, out: "${hidden}"}
      - {name: act, op: relu, in: fc}
    outputs: [act]
networks:
  gen:
    inputs: {z: {shape: [batch, "${latent}"]}}
    graph:
      - {name: h, block: dense, in: z}
      - {name: out, op: linear, in: h, out: 3}
    outputs: {x: out}
  disc:
    inputs: {x: {shape: [batch, 3]}}
    graph:
      - {name: h, block: dense, in: x}
      - {name: out, op: linear, in: h, out: 1}
    outputs: {logit: out}
"""


def test_each_network_is_its_own_graph_sharing_vars_and_blocks(diagnose):
    graph, errors = diagnose(TWO)
    assert errors == []
    gen, disc = graph.networks["gen"], graph.networks["disc"]
    assert list(gen.inputs) == ["z"] and list(gen.outputs) == ["x"]
    assert gen.nodes["h.fc"].out.shape == ("batch", 8)
    assert gen.total_params == (4 * 8 + 8) + (8 * 3 + 3) == 67
    assert disc.total_params == (3 * 8 + 8) + (8 + 1) == 41
    assert gen.name == "pair.gen"


def test_the_union_names_nodes_network_dot_node_and_counts_every_parameter(diagnose):
    graph, _ = diagnose(TWO)
    assert list(graph.inputs) == ["gen__z", "disc__x"]
    assert list(graph.outputs) == ["gen__x", "disc__logit"]
    assert "gen.h.fc" in graph.nodes and "disc.out" in graph.nodes
    assert str(graph.nodes["gen.out"].inputs["x"]) == "gen.h.act"
    assert str(graph.nodes["gen.h.fc"].inputs["x"]) == "gen__z"
    assert graph.nodes["disc.h.fc"].scope == ("disc", "h")
    assert graph.total_params == 67 + 41
    assert [u.name for u in graph.block_uses] == ["gen.h", "disc.h"]


def test_inspect_shows_parameters_per_network(diagnose):
    graph, _ = diagnose(TWO)
    summary = summarize(graph)
    assert summary["networks"] == {"gen": {"params": 67, "nodes": 3, "inputs": ["z"], "outputs": ["x"]},
                                   "disc": {"params": 41, "nodes": 3, "inputs": ["x"], "outputs": ["logit"]}}
    text = format_table(summary)
    assert "network  nodes  params" in text and "gen          3      67" in text


def test_a_single_graph_spec_has_no_networks(diagnose):
    graph, errors = diagnose("nngraph: 1\ninputs: {x: {shape: [2, 3]}}\ngraph: [{name: a, op: relu, in: x}]\n"
                             "outputs: [a]\n")
    assert errors == [] and graph.networks == {}


def test_select_picks_one_network_or_names_the_choices(diagnose):
    graph, _ = diagnose(TWO)
    assert select(graph, "disc") is graph.networks["disc"]
    assert select(graph, None) is graph
    with pytest.raises(ValueError, match="has no network 'critic'; its networks: gen, disc"):
        select(graph, "critic")


# ----- errors at line:col -----------------------------------------------------------------
def test_a_reference_to_another_networks_node_is_unknown_at_its_position(diagnose):
    # a network sees only its own nodes and inputs: disc cannot read gen's 'out'
    text = TWO.replace("- {name: h, block: dense, in: x}", "- {name: h, block: dense, in: gen.out}")
    _, errors = diagnose(text)
    assert len(errors) == 1
    line, col, msg, _ = errors[0]
    assert (line, col, msg) == (21, 37, "unknown reference 'gen.out'")


def test_duplicate_network_names_are_reported_at_the_second(diagnose):
    text = TWO + "  gen:\n    inputs: {z: {shape: [1]}}\n    graph: [{name: a, op: relu, in: z}]\n    outputs: [a]\n"
    _, errors = diagnose(text)
    assert (errors[0][0], errors[0][1]) == (24, 3)
    assert errors[0][2].startswith("duplicate key 'gen' (first defined at")


def test_a_network_without_outputs_is_reported_at_its_name(diagnose):
    text = TWO.replace("    outputs: {logit: out}\n", "")
    _, errors = diagnose(text)
    assert [(e[0], e[1], e[2]) for e in errors] == [(18, 3, "network 'disc' has no 'outputs'")]


def test_unknown_key_in_a_network_suggests_the_closest(diagnose):
    text = TWO.replace("    outputs: {x: out}\n", "    outputs: {x: out}\n    grpah: []\n")
    _, errors = diagnose(text)
    assert [(e[0], e[1], e[2]) for e in errors] == [(18, 5, "unknown key 'grpah' in network 'gen'")]
    assert "graph" in errors[0][3]


def test_top_level_graph_beside_networks_is_an_error(diagnose):
    _, errors = diagnose(TWO + "graph: []\n")
    assert [(e[0], e[1], e[2]) for e in errors] == [(24, 1, "'graph' at the top level of a spec with 'networks'")]


def test_invalid_network_name(diagnose):
    _, errors = diagnose(TWO.replace("  disc:\n", "  a__b:\n"))
    assert [(e[0], e[1], e[2]) for e in errors] == [(18, 3, "invalid network name 'a__b'")]


def test_shape_errors_inside_a_network_point_at_the_node(diagnose):
    _, errors = diagnose(TWO.replace("inputs: {x: {shape: [batch, 3]}}", "inputs: {x: {shape: [batch, 3], dtype: int64}}"))
    assert [(e[0], e[1]) for e in errors] == [(8, 9)]  # the node of block 'dense', as in any graph
    assert errors[0][2] == "node 'h.fc' (linear): input must be a floating-point tensor, got int64"


# ----- train: roles ------------------------------------------------------------------------
def test_train_roles_default_to_network_names_and_must_exist(diagnose):
    _, errors = diagnose(TWO + "train: {task: gan}\n")
    assert [(e[0], e[1]) for e in errors] == [(24, 15), (24, 15)]
    assert errors[0][2] == "task 'gan' needs a network for its role 'generator': the spec has no network 'generator'"
    graph, errors = diagnose(TWO + "train: {task: gan, networks: {generator: gen, discriminator: disc}}\n")
    assert errors == []
    assert roles_of("gan", {"networks": {"generator": "gen", "discriminator": "disc"}}) == {
        "generator": "gen", "discriminator": "disc"}


def test_unknown_role_and_single_graph_tasks_are_refused(diagnose):
    _, errors = diagnose(TWO + "train: {task: gan, networks: {generator: gen, discriminator: disc, critic: disc}}\n")
    assert [(e[0], e[1], e[2]) for e in errors] == [(24, 30, "train.networks: task 'gan' has no role 'critic'")]
    _, errors = diagnose(TWO + "train: {task: classification}\n")
    assert [(e[0], e[1]) for e in errors] == [(24, 15)]
    assert errors[0][2].startswith("task 'classification' trains one graph, but this spec declares networks")


def test_a_network_task_on_a_single_graph_spec_is_refused(diagnose):
    _, errors = diagnose("nngraph: 1\ninputs: {x: {shape: [2, 3]}}\ngraph: [{name: a, op: relu, in: x}]\n"
                         "outputs: [a]\ntrain: {task: dqn}\n")
    assert [(e[0], e[1], e[2]) for e in errors] == [
        (5, 15, "task 'dqn' trains several networks (q), but this spec declares no 'networks'")]


# ----- JSON Schema -------------------------------------------------------------------------
def test_the_schema_accepts_networks_and_rejects_unknown_keys_in_one(spec_file):
    validator = jsonschema.Draft202012Validator(json.loads(json.dumps(json_schema())))
    data = load_yaml_file(spec_file(TWO))
    assert list(validator.iter_errors(data)) == []
    bad = load_yaml_file(spec_file(TWO.replace("    outputs: {x: out}\n", "    outputs: {x: out}\n    grpah: []\n")))
    assert any("grpah" in e.message for e in validator.iter_errors(bad))
