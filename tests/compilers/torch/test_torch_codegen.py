"""The generated forward: readable source, names, comments, error notes, standalone emitted files."""

from __future__ import annotations

import importlib.util
import inspect
import io
import sys
import traceback

import pytest
import torch

from nngraph.compilers.torch import build_module, compile_spec, emit_python, load_spec, registry
from nngraph.compilers.torch.source import display_path
from nngraph.compilers.torch.registry import TorchOpDef
from nngraph.errors import SpecError

ROOT = __import__("pathlib").Path(__file__).resolve().parents[3]
MLP = ROOT / "specs" / "mlp.yaml"


def line_of(path, text: str) -> int:
    """The 1-based line of the spec that holds ``text`` (so header comments can grow without breaking tests)."""
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


FC_LINE = line_of(MLP, "{name: fc,")


def test_forward_has_one_commented_line_per_node():
    model = compile_spec(MLP)
    src = model.source
    spec = display_path(str(MLP))
    use_line = line_of(MLP, "block: dense_relu")
    # each copy of the block is an instance of its own generated class, whose forward names the block's nodes
    block = src.split("class DenseRelu(nng.Block):")[1].split("def forward")[1].split("class ")[0]
    assert f"        # {spec}:{FC_LINE}:9 fc (linear)\n        fc = self.fc(x)  # [batch, 256]\n" in block
    assert f"        # {spec}:{line_of(MLP, '{name: act,')}:9 act (relu)\n        act = torch.relu(fc)  # [batch, 256]\n" in block
    assert block.rstrip().endswith("return act")
    body = src.split(f"class {type(model).__name__}(")[1].split("def forward")[1]
    assert f"        # {spec}:{use_line}:5 body.0 (dense_relu)\n        body_0_act = self.body[0](x)  # [batch, 256]\n" in body
    assert f"        # {spec}:{use_line}:5 body.1 (dense_relu)\n        body_1_act = self.body[1](body_0_act)  # [batch, 256]\n" in body
    assert f"        # {spec}:{line_of(MLP, '{name: head,')}:5 head (linear)\n        head = self.head(body_1_act)  # [batch, 10]\n" in body
    assert body.rstrip().endswith("return head")
    assert "def forward(self, x: torch.Tensor) -> torch.Tensor:" in src
    assert body.count(" = ") == 3  # two block calls and the head
    assert block.count(" = ") == 2  # two nodes, two statements
    assert "self.body = nn.ModuleList([DenseRelu(seed, 'body.0'), DenseRelu2(seed, 'body.1')])" not in src
    assert "self.body[0] = DenseRelu(seed, 'body.0')" in src and "self.body[1] = DenseRelu2(seed, 'body.1')" in src
    assert "'linear', f'{prefix}.fc', seed," in src  # seeded by the full node name: the flat model's weights


def test_repeated_alike_copies_are_a_module_list_the_forward_loops_over():
    model = compile_spec(ROOT / "specs" / "gpt_char.yaml")
    src = model.source
    assert "self.h = nn.ModuleList([DecoderLayer(seed, f'h.{i}') for i in range(2)])" in src
    assert "        h = wpe\n        del wpe\n        for layer in self.h:\n            h = layer(h)  # [batch, seq, 64]\n" in src
    assert src.count("class DecoderLayer(nng.Block):") == 1
    assert type(model.h[0]) is type(model.h[1]) and model.h[1].nng_prefix == "h.1"
    assert [k for k in model.state_dict() if k.startswith("h.1.")][:2] == ["h.1.ln_1.weight", "h.1.ln_1.bias"]


def test_tracebacks_show_the_generated_lines():
    model = compile_spec(MLP)
    with pytest.raises(RuntimeError) as info:
        model(torch.randn(2, 100))
    text = "".join(traceback.format_exception(info.value))
    assert f'File "<nngraph:{display_path(str(MLP))}>"' in text
    assert "fc = self.fc(x)  # [batch, 256]" in text  # the block's line
    assert "body_0_act = self.body[0](x)  # [batch, 256]" in text  # and the model's line that called it


def test_runtime_error_names_the_spec_node_and_the_bad_input():
    model = compile_spec(MLP)
    with pytest.raises(RuntimeError, match="cannot be multiplied") as info:
        model(torch.randn(2, 100))
    notes = info.value.__notes__
    assert notes[0] == f"in node 'body.0.fc' (linear) at {display_path(str(MLP))}:{FC_LINE}:9"
    assert "graph input 'x' has shape [2, 100], the spec declares [batch, 784] (dim 1: expected 784, got 100)" in notes


def test_error_deeper_in_the_graph_points_at_that_node(compile_text):
    text = """
    nngraph: 1
    name: t
    inputs:
      a: {shape: [batch, 4], dtype: float32}
      b: {shape: [batch, 4], dtype: float32}
    graph:
      - {name: s, op: add, in: [a, b]}
      - {name: m, op: matmul, in: [s, b], transpose_b: true}
    outputs: [m]
    """
    _, model = compile_text(text)
    with pytest.raises(RuntimeError) as info:
        model(torch.randn(2, 4), torch.randn(3, 4))
    assert info.value.__notes__[0].startswith("in node 's' (add) at ")
    assert info.value.__notes__[0].endswith("spec.yaml:7:5")
    assert any("'batch' is 3 here but 2 in 'a'" in n for n in info.value.__notes__)


def test_variable_names_avoid_keywords_and_collisions(compile_text):
    text = """
    nngraph: 1
    name: t
    inputs:
      x: {shape: [batch, 8], dtype: float32}
    blocks:
      b:
        inputs: [x]
        nodes: [{name: r, op: relu, in: x}]
        outputs: [r]
    graph:
      - {name: lambda, op: relu, in: x}
      - {name: blk, block: b, in: lambda}
      - {name: blk_r, op: tanh, in: blk}
      - {name: n, op: add, in: [blk_r, lambda]}
    outputs: [n]
    """
    _, model = compile_text(text)
    assert "lambda_ = torch.relu(x)" in model.source
    assert "r = torch.relu(x)" in model.source  # in the block's class
    assert "blk_r = self.blk(lambda_)" in model.source  # the model's call of the block, named after its output
    assert "blk_r_2 = torch.tanh(blk_r)" in model.source
    x = torch.randn(2, 8)
    assert torch.equal(model(x), torch.tanh(x.relu()) + x.relu())


def test_multiple_outputs_return_a_dict_in_spec_order(run_op):
    model, _ = run_op(["{name: a, op: relu, in: x}", "{name: b, op: tanh, in: x}"], outputs="{second: b, first: a}")
    out = model(torch.randn(2, 8))
    assert list(out) == ["second", "first"] and model.output_names == ("second", "first")
    assert "return {'second': b, 'first': a}" in model.source


def test_optional_graph_inputs_default_to_none(run_op):
    inputs = "x: {shape: [batch, 8], dtype: float32}\nmask: {shape: [batch, 8], dtype: float32, optional: true}"
    model, _ = run_op("{name: n, op: relu, in: x}", inputs)
    sig = inspect.signature(model.forward)
    assert list(sig.parameters) == ["x", "mask"] and sig.parameters["mask"].default is None
    model(torch.randn(2, 8))


def test_unconnected_optional_op_input_is_passed_as_none(spec_text, spec_file, monkeypatch):
    seen = {}

    def emit(ctx, e):
        seen.update(e.inputs)
        return f"{e.x} * 1.0"

    monkeypatch.setitem(registry._IMPLS, "position_embedding", TorchOpDef("position_embedding", emit))
    graph = load_spec(spec_file(spec_text("{name: n, op: position_embedding, in: x, type: sinusoidal}",
                                          "x: {shape: [batch, seq, 8], dtype: float32}")))
    src = emit_python(graph)
    assert seen == {"x": "x", "positions": "None"} and "n = x * 1.0" in src


def test_op_without_torch_implementation_is_a_spec_error_at_the_node(run_op, monkeypatch):
    monkeypatch.delitem(registry._IMPLS, "tanh")
    with pytest.raises(SpecError) as info:
        run_op(["{name: a, op: relu, in: x}", "{name: n, op: tanh, in: a}"])
    (d,) = info.value.diagnostics
    assert (d.pos.line, d.pos.col) == (7, 5)
    assert d.message == "node 'n' (tanh): has no PyTorch implementation yet"


def test_node_name_shadowing_a_module_method_is_rejected(run_op):
    with pytest.raises(SpecError) as info:
        run_op("{name: train, op: linear, in: x, out: 4}", outputs="[train]")
    (d,) = info.value.diagnostics
    assert (d.pos.line, d.pos.col) == (6, 5)
    assert "node name 'train' (in 'train') clashes with the torch.nn.Module attribute 'train'" in d.message


def test_emitted_file_is_importable_and_rebuilds_the_same_model(tmp_path):
    graph = load_spec(MLP)
    path = tmp_path / "mlp_model.py"
    path.write_text(emit_python(graph))
    spec = importlib.util.spec_from_file_location("mlp_model", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["mlp_model"] = mod
    try:
        spec.loader.exec_module(mod)
        standalone = mod.Mlp(seed=7)
    finally:
        del sys.modules["mlp_model"]
    built = build_module(graph, seed=7)
    for (k1, v1), (k2, v2) in zip(standalone.state_dict().items(), built.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)
    x = torch.randn(3, 784)
    assert torch.equal(standalone(x), built(x))
    assert standalone.source == path.read_text()
    with pytest.raises(RuntimeError) as info:  # error notes work for the file too
        standalone(torch.randn(3, 5))
    assert info.value.__notes__[0].startswith("in node 'body.0.fc' (linear) at ")


def test_model_pickles_through_torch_save():
    model = compile_spec(MLP, seed=3)
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    x = torch.randn(2, 784)
    assert torch.equal(loaded(x), model(x)) and loaded.source == model.source


def test_same_graph_builds_reuse_one_class():
    graph = load_spec(MLP)
    assert type(build_module(graph, seed=0)) is type(build_module(graph, seed=1))


def test_two_sources_from_one_spec_get_distinct_filenames():
    a = compile_spec(MLP)
    b = compile_spec(MLP, overrides=["hidden=32"])
    fa, fb = type(a).forward.__code__.co_filename, type(b).forward.__code__.co_filename
    assert fa != fb and fb.startswith("<nngraph:") and "#" in fb
    with pytest.raises(RuntimeError) as info:
        b(torch.randn(2, 5))
    text = "".join(traceback.format_exception(info.value))
    assert "fc = self.fc(x)  # [batch, 32]" in text


@pytest.mark.parametrize("doc", [
    'A model that says "hi"',  # ends with a quote: was '..."hi""""' (a syntax error)
    'Three quotes """ inside, a backslash \\ and \\n (not a newline), a quote at the end"',
    'Ends with a backslash \\',
    '"""',
    'Quotes "" and """" runs, a tab\tand a bell \x07 and a NUL \x00 character',
])
def test_docstring_with_quotes_backslashes_and_control_characters_compiles_to_the_same_text(compile_text, doc):
    import json

    text = ("nngraph: 1\nname: t\ndoc: " + json.dumps(doc) + "\ninputs:\n  x: {shape: [batch, 8], dtype: float32}\n"
            "graph:\n  - {name: n, op: relu, in: x}\noutputs: [n]\n")
    _, model = compile_text(text)
    ns: dict = {}
    exec(compile(model.source, "<generated>", "exec"), ns)  # the emitted file parses and runs
    got = " ".join(ns["T"].__doc__.split())  # textwrap reflows whitespace (the tab too), nothing else
    assert got == " ".join(doc.split())
    assert type(model).__doc__ == ns["T"].__doc__
