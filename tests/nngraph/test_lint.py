"""The closed IR: Graph.lint() accepts every zoo graph and names the node of each broken invariant."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from nngraph import load_spec
from nngraph.ir import Ref
from nngraph.limits import Limits
from nngraph.lint import LintError, lint_graph
from nngraph.registry import families, internal_ops, lookup, registry
from nngraph.schema import json_schema

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted(ROOT.glob("specs/**/*.yaml"))
BIG = Limits(max_memory=2**50)  # gshard's 13 B parameters are checked, not allocated


@pytest.mark.parametrize("path", SPECS, ids=[str(p.relative_to(ROOT / "specs")) for p in SPECS])
def test_every_zoo_graph_is_well_formed(path):
    graph = load_spec(path, limits=BIG)
    assert lint_graph(graph) == []
    graph.lint()


@pytest.fixture()
def mlp():
    return load_spec(ROOT / "specs" / "mlp.yaml")


def _messages(graph) -> list[str]:
    return [f"{d.pos.line}:{d.pos.col}: {d.message}" for d in lint_graph(graph)]


def _swap(graph, name, node):
    graph.nodes = {k: (node if k == name else v) for k, v in graph.nodes.items()}
    return graph


def test_unknown_op_is_named_at_the_node(mlp):
    first = next(iter(mlp.nodes.values()))
    _swap(mlp, first.name, replace(first, op="linearr"))
    assert _messages(mlp) == [f"18:9: IR lint: node '{first.name}' (linearr) has op 'linearr', which no registry "
                              "declares (ops that passes create are declared internal, see nngraph/ops/backend_ops.py)"]
    with pytest.raises(LintError, match=r"mlp.yaml:18:9: IR lint: node 'body.0.fc' \(linearr\)"):
        mlp.lint()


def test_refs_must_resolve_to_an_earlier_node_and_an_existing_output(mlp):
    names = list(mlp.nodes)
    first, last = mlp.nodes[names[0]], mlp.nodes[names[-1]]
    _swap(mlp, first.name, replace(first, inputs={"x": Ref(last.name)}))
    assert any(f"reads '{last.name}' before node '{last.name}' is defined (the node order must be topological)" in m
               for m in _messages(mlp))
    _swap(mlp, first.name, replace(first, inputs={"x": Ref("nowhere")}))
    assert any("reads 'nowhere', which is neither a graph input nor a node" in m for m in _messages(mlp))
    second = mlp.nodes[names[1]]
    _swap(mlp, second.name, replace(second, inputs={"x": Ref(first.name, "aux")}))
    assert any(f"reads '{first.name}.aux', but node '{first.name}' has outputs out" in m for m in _messages(mlp))


def test_every_node_is_typed_and_its_params_are_valid(mlp):
    first = next(iter(mlp.nodes.values()))
    _swap(mlp, first.name, replace(first, outputs={}))
    assert _messages(mlp) == [f"18:9: IR lint: node '{first.name}' (linear) has no inferred output type"]
    _swap(mlp, first.name, replace(first, params={**first.params, "out": -3, "biass": True}))
    assert _messages(mlp) == [f"18:9: IR lint: node '{first.name}' (linear) parameter 'out': must be >= 1, got -3",
                              f"18:9: IR lint: node '{first.name}' (linear) has parameter 'biass', which op 'linear' "
                              "does not take"]
    _swap(mlp, first.name, replace(first, params={k: v for k, v in first.params.items() if k != "out"}))
    assert _messages(mlp) == [f"18:9: IR lint: node '{first.name}' (linear) is missing required parameter 'out'"]


def test_graph_outputs_must_resolve(mlp):
    mlp.outputs = {**mlp.outputs, "extra": Ref("ghost")}
    assert any("graph output 'extra' reads 'ghost', which is neither a graph input nor a node" in m
               for m in _messages(mlp))


def test_internal_ops_are_declared_but_hidden_from_users():
    ops = internal_ops()
    assert set(ops) == {"sdpa", "attention_lowered", "skipped_block"}
    schema = json_schema()
    user_docs = {d.name for fam in families().values() for d in fam}
    for name, d in ops.items():
        assert d.internal and lookup(name) is d
        assert name not in registry() and name not in user_docs and f"op.{name}" not in schema["$defs"]
    assert set(ops) & set(schema["$defs"]["node"]["else"]["properties"]["op"]["enum"]) == set()
    assert lookup("attention_lowered").params.keys() == registry()["attention"].params.keys() | {"kernel"}


def test_a_spec_cannot_name_a_back_end_op(tmp_path):
    from nngraph import check_spec

    spec = tmp_path / "s.yaml"
    spec.write_text("nngraph: 1\ninputs:\n  q: {shape: [2, 4, 8]}\ngraph:\n"
                    "  - {name: y, op: sdpa, in: {q: q, k: q, v: q}}\noutputs: [y]\n")
    _, diag = check_spec(spec)
    assert any("unknown op 'sdpa'" in d.message for d in diag)
