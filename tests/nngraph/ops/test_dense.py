"""Dense family, front end: one embedding table shared by two lookups (``embedding`` with ``tie:``)."""

from __future__ import annotations

import pytest

from _onenode import col_of, node_line, spec_text, value_col

INPUTS = {"src": (["batch", "seq"], "int64"), "tgt": (["batch", "seq"], "int64")}


def _tied(second: str) -> str:
    return spec_text(INPUTS, ["{name: a, op: embedding, in: src, num: 100, dim: 16}", second,
                              "{name: n, op: add, in: [a, b]}"])


def test_tied_embedding_counts_one_table_and_has_the_lookup_shape(diagnose):
    graph, errors = diagnose(_tied("{name: b, op: embedding, in: tgt, num: 100, dim: 16, tie: a}"))
    assert errors == []
    assert graph.nodes["b"].n_params == 0 and graph.nodes["a"].n_params == 1600
    assert graph.total_params == 1600
    assert graph.nodes["b"].out.shape == ("batch", "seq", 16)


def test_untied_embeddings_count_two_tables(diagnose):
    graph, errors = diagnose(_tied("{name: b, op: embedding, in: tgt, num: 100, dim: 16}"))
    assert errors == [] and graph.total_params == 3200


@pytest.mark.parametrize("second, param, message", [
    ("{name: b, op: embedding, in: tgt, num: 99, dim: 16, tie: a}", "tie",
     "tied table shape mismatch: expected [100, 16] (the table of 'a'), got [99, 16]"),
    ("{name: b, op: embedding, in: tgt, num: 100, dim: 16, padding_idx: 0, tie: a}", "padding_idx",
     "padding_idx is set on a tied embedding"),
])
def test_tied_embedding_errors_point_at_the_parameter(diagnose, second, param, message):
    text = _tied(second)
    _, errors = diagnose(text)
    line = node_line(1, len(INPUTS))
    assert [(e[0], e[1], e[2]) for e in errors] == [(line, value_col(text, line, param), f"node 'b' (embedding): {message}")]


def test_embedding_can_only_tie_to_an_embedding(diagnose):
    text = spec_text({"x": (["batch", 16], "float32"), "t": (["batch"], "int64")}, [
        "{name: a, op: linear, in: x, out: 16}",
        "{name: b, op: embedding, in: t, num: 16, dim: 16, tie: a}",
        "{name: n, op: add, in: [a, b]}"])
    _, errors = diagnose(text)
    line = node_line(1, 2)
    assert [(e[0], e[1], e[2]) for e in errors] == [
        (line, value_col(text, line, "tie"), "node 'b' (embedding): an embedding can only tie to another embedding, 'a' is linear")]


def test_a_linear_cannot_tie_to_an_embedding_that_is_itself_tied(diagnose):
    text = spec_text(INPUTS, [
        "{name: a, op: embedding, in: src, num: 100, dim: 16}",
        "{name: b, op: embedding, in: tgt, num: 100, dim: 16, tie: a}",
        "{name: c, op: add, in: [a, b]}",
        "{name: n, op: linear, in: c, out: 100, tie: b}"])
    _, errors = diagnose(text)
    line = node_line(3, len(INPUTS))
    assert [(e[0], e[1], e[2], e[3]) for e in errors] == [
        (line, value_col(text, line, "tie"), "node 'n' (linear): 'b' is itself tied to 'a'", "tie to 'a' directly")]
    assert col_of(text, line, "tie: b") == value_col(text, line, "tie") - 5
