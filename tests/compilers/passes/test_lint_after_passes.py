"""Every pass leaves a closed IR: the zoo's graphs lint before and after fusion + lowering for every target."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from nngraph import load_spec
from nngraph.compilers.passes import run_passes
from nngraph.compilers.passes.rewrite import Edit, apply_edits
from nngraph.compilers.targets import MODES, profile_names
from nngraph.limits import Limits
from nngraph.lint import LintError, lint_graph
from nngraph.zoo import zoo_specs

ROOT = Path(__file__).resolve().parents[3]
ZOO = zoo_specs()  # specs/ and specs/seeds/ (tests/nngraph/test_zoo.py pins that it lists every one)


@pytest.mark.parametrize("spec", ZOO, ids=[s.name for s in ZOO])
def test_zoo_graph_lints_before_and_after_lowering_for_every_target(spec):
    graph = load_spec(str(spec.file), limits=Limits(max_memory=2**50))  # gshard's 13 B parameters: checked, not allocated
    assert lint_graph(graph) == []
    for target in profile_names():
        for mode in MODES:
            final, results = run_passes(graph, target, mode)  # each edit is linted where it is applied
            assert lint_graph(final) == [], (target, mode)


@pytest.mark.parametrize("spec, made", [("attention_written_out", {"sdpa"}), ("gpt_char", {"attention_lowered"})])
def test_the_linted_graphs_hold_the_back_end_ops_passes_make(spec, made):
    """Guards the test above against linting only unchanged graphs."""
    final, _ = run_passes(load_spec(ROOT / "specs" / f"{spec}.yaml"), "cpu", "inference")
    assert {n.op for n in final.nodes.values()} & {"sdpa", "attention_lowered"} == made
    assert lint_graph(final) == []


def test_an_edit_that_breaks_the_ir_fails_at_the_node():
    graph = load_spec(ROOT / "specs" / "mlp.yaml")
    node = next(iter(graph.nodes.values()))
    with pytest.raises(LintError, match=r"mlp.yaml:18:9: IR lint: node 'body.0.fc' \(linear\) has no inferred output"):
        apply_edits(graph, [Edit({node.name: replace(node, outputs={})}, "drops the type")])
    with pytest.raises(LintError, match="has op 'fused_thing', which no registry declares"):
        apply_edits(graph, [Edit({node.name: replace(node, op="fused_thing")}, "an undeclared back-end op")])
