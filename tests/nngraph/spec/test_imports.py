"""Imports: block libraries from sibling files and subdirectories, ``as:`` prefixes, and the bundled std: library."""

from __future__ import annotations

from pathlib import Path

import pytest

from nngraph.ir import Ref
from nngraph.spec import check_spec, load_spec
from nngraph.spec.blocks import LIBRARY_DIR

DENSE_LIB = """\
nngraph: 1
name: dense_lib
vars: {width: 12}
blocks:
  dense:
    inputs: [x]
    params: {out: "${width}"}
    nodes:
      - {name: fc, op: linear, in: x, out: "${out}"}
      - {name: act, op: relu, in: fc}
    outputs: [act]
  two_dense:
    doc: uses a block of its own file
    inputs: [x]
    nodes:
      - {name: first, block: dense, in: x}
      - {name: second, block: dense, in: first, with: {out: 4}}
    outputs: [second]
"""


def spec(imports: str, graph: str, d: int = 8) -> str:
    return (f"nngraph: 1\nname: s\nimports: {imports}\ninputs:\n  x: {{shape: [batch, {d}], dtype: float32}}\n"
            f"graph:\n{graph}outputs: [out]\n")


@pytest.fixture
def project(tmp_path):
    """A project tree: write files relative to it, return the path of the first one written as spec."""

    def write(files: dict[str, str]) -> Path:
        for name, text in files.items():
            path = tmp_path / "proj" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        return tmp_path / "proj" / next(iter(files))

    return write


def test_import_from_a_sibling_file(project):
    path = project({"model.yaml": spec("[dense_lib.yaml]", "  - {name: out, block: dense, in: x}\n"),
                    "dense_lib.yaml": DENSE_LIB})
    g = load_spec(path)
    assert g.nodes["out.fc"].params["out"] == 12  # the default comes from the library's own vars
    assert g.nodes["out.act"].out.shape == ("batch", 12)
    assert g.total_params == 8 * 12 + 12


def test_import_from_a_subdirectory(project):
    path = project({"model.yaml": spec("[lib/nn/dense_lib.yaml]", "  - {name: out, block: dense, in: x, with: {out: 3}}\n"),
                    "lib/nn/dense_lib.yaml": DENSE_LIB})
    assert load_spec(path).nodes["out.fc"].out.shape == ("batch", 3)


def test_as_prefixes_the_imported_block_names(project):
    path = project({"model.yaml": spec("[{path: dense_lib.yaml, as: nn}]", "  - {name: out, block: nn.dense, in: x}\n"),
                    "dense_lib.yaml": DENSE_LIB})
    assert "out.fc" in load_spec(path).nodes
    bare = project({"bare.yaml": spec("[{path: dense_lib.yaml, as: nn}]", "  - {name: out, block: dense, in: x}\n")})
    _, diag = check_spec(bare)
    [d] = list(diag)
    assert (d.pos.line, d.pos.col, d.message) == (7, 24, "unknown block 'dense' in node 'out'")
    assert d.hint.startswith("did you mean 'nn.dense'?")


def test_a_library_block_uses_blocks_of_its_own_file_under_any_prefix(project):
    path = project({"model.yaml": spec("[{path: dense_lib.yaml, as: nn}]", "  - {name: out, block: nn.two_dense, in: x}\n"),
                    "dense_lib.yaml": DENSE_LIB})
    g = load_spec(path)
    assert g.nodes["out.first.fc"].params["out"] == 12
    assert g.nodes["out.second.fc"].inputs == {"x": Ref("out.first.act")}
    assert g.nodes["out.second.act"].out.shape == ("batch", 4)


def test_two_libraries_under_different_prefixes(project):
    other = DENSE_LIB.replace("width: 12", "width: 5")
    path = project({"model.yaml": spec("[{path: a.yaml, as: a}, {path: b.yaml, as: b}]",
                                       "  - {name: one, block: a.dense, in: x}\n  - {name: out, block: b.dense, in: one}\n"),
                    "a.yaml": DENSE_LIB, "b.yaml": other})
    g = load_spec(path)
    assert (g.nodes["one.fc"].params["out"], g.nodes["out.fc"].params["out"]) == (12, 5)


def test_a_library_may_import_another(project):
    path = project({"model.yaml": spec("[lib/stack.yaml]", "  - {name: out, block: stack, in: x}\n"),
                    "lib/stack.yaml": "nngraph: 1\nimports: [dense_lib.yaml]\nblocks:\n  stack:\n    inputs: [x]\n"
                                      "    nodes: [{name: d, block: dense, repeat: 2, in: x}]\n    outputs: [d]\n",
                    "lib/dense_lib.yaml": DENSE_LIB})
    assert [n for n in load_spec(path).nodes] == ["out.d.0.fc", "out.d.0.act", "out.d.1.fc", "out.d.1.act"]


def test_own_blocks_take_precedence_over_imported_ones(project):
    own = ("blocks:\n  dense:\n    inputs: [x]\n    nodes: [{name: only, op: tanh, in: x}]\n    outputs: [only]\n")
    path = project({"model.yaml": spec("[dense_lib.yaml]", "  - {name: out, block: dense, in: x}\n").replace("\ngraph:", "\n" + own + "graph:"),
                    "dense_lib.yaml": DENSE_LIB})
    assert list(load_spec(path).nodes) == ["out.only"]


def test_a_block_library_validates_on_its_own(project):
    path = project({"dense_lib.yaml": DENSE_LIB})
    graph, diag = check_spec(path)
    assert graph is None and list(diag) == []


def test_a_mistake_in_a_library_is_reported_in_the_library(project):
    path = project({"model.yaml": spec("[dense_lib.yaml]", "  - {name: out, block: dense, in: x}\n"),
                    "dense_lib.yaml": DENSE_LIB.replace("op: relu", "op: relux")})
    _, diag = check_spec(path)
    [d] = list(diag)
    assert Path(d.pos.file).name == "dense_lib.yaml"
    assert (d.pos.line, d.pos.col, d.message) == (10, 25, "unknown op 'relux' in node 'act'")


# ----- the bundled library -------------------------------------------------------------------
def test_the_std_library_is_shipped_with_the_package():
    assert (LIBRARY_DIR / "transformer.yaml").is_file()
    graph, diag = check_spec(LIBRARY_DIR / "transformer.yaml")
    assert list(diag) == []


@pytest.mark.parametrize("block, d, with_, per_layer", [
    # GPT-2 small / BERT-base layer: 12·d² + 13·d with d = 768 (7,087,872; 12 of them in GPT-2's 124M)
    ("decoder_layer", 768, "{heads: 12, ffn: 3072}", 7_087_872),
    ("encoder_layer", 768, "{heads: 12, ffn: 3072}", 7_087_872),
    # LLaMA-7B layer: 4·d² attention + 3·d·11008 SwiGLU + 2·d norms (32 of them in its 6.74B)
    ("llama_decoder_layer", 4096, "{heads: 32, kv_heads: 32, ffn: 11008}", 202_383_360),
    # grouped-query attention with 2 kv heads of 8: q, o are d×d; k, v are d×(d/4)
    ("llama_decoder_layer", 512, "{heads: 8, kv_heads: 2, ffn: 1536}", 2 * 512 * 512 + 2 * 512 * 128 + 3 * 512 * 1536 + 2 * 512),
])
def test_std_transformer_layers_match_published_counts(project, block, d, with_, per_layer):
    path = project({"model.yaml": spec("[{path: std:transformer.yaml, as: tf}]",
                                       f"  - {{name: out, block: tf.{block}, repeat: 2, in: x, with: {with_}}}\n", d=d)
                    .replace("[batch, ", "[batch, seq, ")})
    g = load_spec(path)
    assert g.total_params == 2 * per_layer
    assert g.nodes[next(n for n in g.nodes if n.startswith("out.1."))].scope == ("out", "1")
    assert g.outputs["out"].node.startswith("out.1.")
    assert g.type_of(g.outputs["out"]).shape == ("batch", "seq", d)


def test_std_cross_decoder_layer_reads_the_same_context_in_every_copy(project):
    text = ("nngraph: 1\nname: s\nimports: [{path: std:transformer.yaml, as: tf}]\ninputs:\n"
            "  x: {shape: [batch, seq, 64], dtype: float32}\n  memory: {shape: [batch, src, 64], dtype: float32}\n"
            "graph:\n  - {name: out, block: tf.cross_decoder_layer, repeat: 3, in: {x: x, context: memory}, with: {heads: 4, ffn: 256}}\n"
            "outputs: [out]\n")
    g = load_spec(project({"model.yaml": text}))
    assert [g.nodes[f"out.{i}.cross_attn"].inputs["context"] for i in range(3)] == [Ref("memory")] * 3
    assert g.nodes["out.1.ln_1"].inputs["x"] == Ref("out.0.res_3")
    d = 64
    assert g.total_params == 3 * (16 * d * d + 19 * d)


def test_std_library_without_a_prefix(project):
    text = spec("[std:transformer.yaml]", "  - {name: out, block: encoder_layer, in: x, with: {heads: 2, ffn: 32}}\n")
    g = load_spec(project({"model.yaml": text.replace("[batch, ", "[batch, seq, ")}))
    d, ffn = 8, 32
    attention, norms, mlp = 4 * d * d + 4 * d, 2 * 2 * d, d * ffn + ffn + ffn * d + d
    assert g.total_params == attention + norms + mlp == 872


# ----- bounded work (issue 24) ---------------------------------------------------------------
def _diamond(tmp_path: Path, depth: int = 16, fanout: int = 3, alias: bool = True) -> Path:
    """Libraries l0..l{depth-1}, each importing the next ``fanout`` times; the spec uses the deepest block
    through the longest alias chain (a0.a0....b{depth-1}), the one a flattened namespace would reach last."""
    for i in range(depth):
        imports = ""
        if i < depth - 1:
            items = [f"{{path: l{i + 1}.yaml, as: a{k}}}" if alias else f"l{i + 1}.yaml" for k in range(fanout)]
            imports = f"imports: [{', '.join(items)}]\n"
        (tmp_path / f"l{i}.yaml").write_text(
            f"nngraph: 1\nname: l{i}\n{imports}blocks:\n  b{i}:\n    inputs: [x]\n"
            f"    nodes:\n      - {{name: r, op: relu, in: x}}\n    outputs: [r]\n")
    deepest = ("a0." * (depth - 1) if alias else "") + f"b{depth - 1}"
    path = tmp_path / "spec.yaml"
    path.write_text(spec("[l0.yaml]", f"  - {{name: out, block: {deepest}, in: x}}\n"))
    return path


@pytest.mark.parametrize("alias", [True, False])
def test_a_diamond_of_imports_costs_linear_time(tmp_path, alias):
    import time

    path = _diamond(tmp_path, alias=alias)
    start = time.process_time()
    graph, diag = check_spec(path)
    assert time.process_time() - start < 1.0
    assert [d.message for d in diag if d.severity == "error"] == []
    assert list(graph.nodes) == ["out.r"]


def test_an_unknown_block_in_a_diamond_gets_a_bounded_hint(tmp_path):
    path = _diamond(tmp_path)
    path.write_text(spec("[l0.yaml]", "  - {name: out, block: a0.a0.b3, in: x}\n"))
    _, diag = check_spec(path)
    [err] = [d for d in diag if d.severity == "error"]
    assert (err.pos.line, err.pos.col) == (7, 24)
    assert err.message == "unknown block 'a0.a0.b3' in node 'out'"
    assert "did you mean 'a0.a0.b2'?" in err.hint


def test_an_import_path_with_a_nul_byte_is_a_located_error(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(spec('["lib\\0.yaml"]', "  - {name: out, op: relu, in: x}\n"))
    _, diag = check_spec(path)
    assert [(d.pos.line, d.pos.col, d.message) for d in diag if d.severity == "error"] == [
        (3, 11, "import path 'lib\\x00.yaml' contains a NUL byte")]
