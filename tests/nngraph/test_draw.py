"""`nngraph.draw`: DOT and Mermaid text (blocks as clusters, shapes on edges), rendering via Graphviz."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from nngraph import draw
from nngraph.draw import DrawError, render, to_dot, to_mermaid
from nngraph.spec import load_spec

# A nested block: outer block 'enc' holds a repeated block 'inner' (2 copies).
NESTED = """
nngraph: 1
name: nested "demo"
inputs:
  x: {shape: [batch, 8], dtype: float32}
  bias: {shape: [batch, 8], dtype: float32, optional: true}
blocks:
  ff:
    inputs: [x]
    nodes:
      - {name: fc, op: linear, in: x, out: 8}
      - {name: act, op: relu, in: fc}
    outputs: [act]
  enc:
    inputs: [x]
    nodes:
      - {name: inner, block: ff, repeat: 2, in: x}
      - {name: proj, op: linear, in: inner, out: 4}
    outputs: [proj]
graph:
  - {name: e, block: enc, in: x}
  - {name: parts, op: split, in: e, sizes: [1, 3], names: [a, b]}
  - {name: head, op: add, in: [parts.b, parts.b]}
outputs: {logits: head, first: parts.a}
"""

HAVE_DOT = shutil.which("dot") is not None


@pytest.fixture
def nested(spec_file):
    return load_spec(spec_file(NESTED))


def test_dot_nests_clusters_by_scope(nested):
    text = to_dot(nested)
    lines = [line.strip() for line in text.splitlines()]
    i_e = lines.index('subgraph "cluster_e" {')
    i_inner = lines.index('subgraph "cluster_e_inner" {')
    i_copy = lines.index('subgraph "cluster_e_inner_0" {')
    assert i_e < i_inner < i_copy
    assert 'label="e: enc"; style="rounded"; color="gray50";' in lines
    assert 'label="e.inner: ff ×2"; style="rounded"; color="gray50";' in lines
    # a node sits inside its innermost cluster: between that cluster's opening line and its closing brace
    fc = next(i for i, line in enumerate(lines) if line.startswith('"e.inner.0.fc" [shape=box'))
    assert i_copy < fc < lines.index("}", i_copy)


def test_dot_edges_carry_tensor_types_and_output_names(nested):
    text = to_dot(nested)
    assert '"x" -> "e.inner.0.fc" [label="float32[batch, 8]"];' in text
    assert '"e.proj" -> "parts" [label="float32[batch, 4]"];' in text
    assert '"parts" -> "head" [label="b: float32[batch, 3]"];' in text
    assert '"head" -> "output:logits" [label="float32[batch, 3]"];' in text
    assert '"parts" -> "output:first" [label="float32[batch, 1]"];' in text


def test_dot_gives_inputs_and_outputs_their_own_shapes(nested):
    text = to_dot(nested)
    assert '"x" [shape=invhouse, label="x\\nfloat32[batch, 8]"];' in text
    assert '"bias" [shape=invhouse, label="bias\\nfloat32[batch, 8]", style="dashed"];' in text
    assert '"output:logits" [shape=house, style="bold", label="logits"];' in text
    assert '"e.proj" [shape=box, style="rounded", label="proj\\nlinear\\n36 params"];' in text  # 8*4 + 4


def test_dot_escapes_quotes_in_the_graph_name(nested):
    assert to_dot(nested).startswith('digraph "nested \\"demo\\"" {')


@pytest.mark.skipif(not HAVE_DOT, reason="Graphviz 'dot' is not installed")
def test_graphviz_accepts_the_dot_text(nested, tmp_path):
    proc = subprocess.run(["dot", "-Tsvg"], input=to_dot(nested), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "<svg" in proc.stdout and "e.inner: ff ×2" in proc.stdout
    out = render(nested, tmp_path / "g.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_mermaid_has_nested_subgraphs_and_typed_edges(nested):
    text = to_mermaid(nested)
    lines = [line.strip() for line in text.splitlines()]
    assert lines[0] == "flowchart TB"
    assert 'subgraph s_e["e: enc"]' in lines and 'subgraph s_e_inner["e.inner: ff ×2"]' in lines
    assert lines.count("end") == 4  # e, e.inner, e.inner.0, e.inner.1
    assert 'n_x -->|"float32[batch, 8]"| n_e_inner_0_fc' in lines
    assert 'n_parts -->|"b: float32[batch, 3]"| n_head' in lines
    assert 'n_x[/"x<br/>float32[batch, 8]"/]' in lines
    assert 'n_output_logits[["logits"]]' in lines


def test_mermaid_ids_are_plain_identifiers(nested):
    ids = re.findall(r"^\s*(n_\w+)[\[(]", to_mermaid(nested), re.M)
    assert len(ids) == len(set(ids)) == 2 + 7 + 2  # inputs, nodes, outputs


def test_render_writes_dot_and_mermaid_by_suffix(nested, tmp_path):
    out = tmp_path / "drawings"
    assert render(nested, out / "g.dot").read_text() == to_dot(nested)
    assert render(nested, out / "sub" / "g.mmd").read_text() == to_mermaid(nested)
    assert sorted(p.name for p in out.rglob("*")) == ["g.dot", "g.mmd", "sub"]  # no temp files left


def test_render_without_graphviz_says_how_to_fix(nested, tmp_path, monkeypatch):
    monkeypatch.setattr(draw.shutil, "which", lambda name: None)
    with pytest.raises(DrawError, match=r"install graphviz .* or write \.dot or \.mmd instead"):
        render(nested, tmp_path / "g.svg")
    assert not (tmp_path / "g.svg").exists()


def test_render_rejects_unknown_formats(nested, tmp_path):
    with pytest.raises(DrawError, match=r"unknown drawing format 'jpg': use one of \.dot, \.svg, \.png, \.mmd"):
        render(nested, tmp_path / "g.jpg")


TIED = """
nngraph: 1
name: tied
inputs:
  tokens: {shape: [batch, seq], dtype: int64}
graph:
  - {name: emb, op: embedding, in: tokens, num: 100, dim: 16}
  - {name: head, op: linear, in: emb, out: 100, tie: emb, bias: false}
outputs: {logits: head}
"""


def test_weight_tie_is_a_dashed_edge(spec_file):
    g = load_spec(spec_file(TIED))
    assert '"emb" -> "head" [label="tie", style="dashed", arrowhead="none", constraint=false];' in to_dot(g)
    assert '  n_emb -.-|"tie"| n_head' in to_mermaid(g).splitlines()


def test_collapsed_repeats_draw_gpt2_small_as_one_node_per_repeated_block():
    from pathlib import Path

    from nngraph.draw_collapse import collapse_repeats

    specs = Path(__file__).resolve().parents[2] / "specs"
    g = collapse_repeats(load_spec(specs / "gpt2_small.yaml"))
    dot = to_dot(g)
    assert '"h" [shape=box, style="rounded", label="h\\ndecoder_layer ×12\\n85,054,464 params"]' in dot
    assert '"drop" -> "h"' in dot and '"h" -> "ln_f"' in dot and "h.0." not in dot and "cluster_h" not in dot
    assert "decoder_layer ×12" in to_mermaid(g)
    # every edge of every zoo spec, collapsed, joins drawn nodes (outputs read from inside a use included)
    for path in sorted(specs.glob("*.yaml")):
        d = to_dot(collapse_repeats(load_spec(path)))
        drawn = set(re.findall(r'^\s*"([^"]+)" \[shape', d, re.M))
        for src, dst in re.findall(r'^\s*"([^"]+)" -> "([^"]+)"', d, re.M):
            assert src in drawn and dst in drawn, (path.stem, src, dst)
