"""Public API of the torch back end: parameter counts, state dicts, seeds, sharing, init, compile/export."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from nngraph.compilers.torch import (StateDictError, build_module, compile_spec, load_spec, load_state_dict, registry,
                             state_dict_for)
from nngraph.errors import SpecError
from nngraph.spec import check_spec

ROOT = Path(__file__).resolve().parents[3]
MLP = ROOT / "specs" / "mlp.yaml"
SPECS = sorted((ROOT / "specs").glob("*.yaml"))


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_every_compilable_spec_has_the_ir_parameter_count(path):
    graph = load_spec(path)
    missing = sorted({n.op for n in graph.nodes.values()} - set(registry.impls()))
    if missing:
        pytest.skip(f"no torch implementation yet for {', '.join(missing)}")
    model = build_module(graph)
    assert sum(p.numel() for p in model.parameters()) == graph.total_params


def test_state_dict_uses_spec_names():
    assert list(compile_spec(MLP).state_dict()) == [
        "body.0.fc.weight", "body.0.fc.bias", "body.1.fc.weight", "body.1.fc.bias", "head.weight", "head.bias"]


def test_state_dict_survives_an_edit_of_another_node():
    trained = compile_spec(MLP, seed=1)
    saved = state_dict_for(trained)
    edited = compile_spec(MLP, overrides=["graph.head.out=3"], seed=2)
    with pytest.raises(StateDictError, match=r"shape mismatch: head.weight \(model \[3, 256\], state dict \[10, 256\]\)"):
        load_state_dict(edited, saved)  # strict by default, and nothing is loaded
    assert not torch.equal(edited.body[0].fc.weight, trained.body[0].fc.weight)
    report = load_state_dict(edited, saved, strict=False)
    assert report.loaded == ["body.0.fc.weight", "body.0.fc.bias", "body.1.fc.weight", "body.1.fc.bias"]
    assert set(report.mismatched) == {"head.weight", "head.bias"} and not report.missing and not report.unexpected
    for key in report.loaded:
        assert torch.equal(edited.state_dict()[key], saved[key])
    untouched = {k: v for k, v in saved.items() if not k.startswith("head.")}
    untouched |= {k: v for k, v in edited.state_dict().items() if k.startswith("head.")}
    assert load_state_dict(edited, untouched).ok  # strict load of the untouched names (plus the new head)


def test_same_seed_same_weights_different_seed_different():
    graph = load_spec(MLP)
    a, b, c = build_module(graph, seed=5), build_module(graph, seed=5), build_module(graph, seed=6)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key])
        if key.endswith("weight"):
            assert not torch.equal(value, c.state_dict()[key])


def test_a_nodes_initial_weights_do_not_depend_on_other_nodes():
    base = compile_spec(MLP, seed=0)
    edited = compile_spec(MLP, overrides=["graph.head.out=3"], seed=0)
    assert torch.equal(base.body[1].fc.weight, edited.body[1].fc.weight)


def test_building_does_not_touch_the_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    compile_spec(MLP)
    assert torch.equal(torch.rand(3), expected)


SHARED = """
nngraph: 1
name: shared
inputs:
  x: {shape: [batch, 8], dtype: float32}
blocks:
  layer:
    inputs: [x]
    nodes:
      - {name: fc, op: linear, in: x, out: 8}
      - {name: act, op: tanh, in: fc}
    outputs: [act]
graph:
  - {name: layers, block: layer, repeat: 3, share: true, in: x}
  - {name: head, op: linear, in: layers, out: 2}
outputs: [head]
"""


def test_shared_repeat_reuses_the_first_copys_module(compile_text):
    graph, model = compile_text(SHARED)
    assert model.layers[1].fc is model.layers[0].fc and model.layers[2].fc is model.layers[0].fc
    assert sum(p.numel() for p in model.parameters()) == graph.total_params == 8 * 8 + 8 + 8 * 2 + 2
    assert "self.layers[1].fc = self.layers[0].fc  # shared with layers.0.fc (share)" in model.source
    sd = state_dict_for(model)
    assert list(sd) == ["layers.0.fc.weight", "layers.0.fc.bias", "head.weight", "head.bias"]
    other = build_module(graph, seed=1)
    assert load_state_dict(other, sd).ok
    x = torch.randn(4, 8)
    assert torch.equal(other(x), model(x))
    w, b = model.layers[0].fc.weight, model.layers[0].fc.bias
    h = x
    for _ in range(3):
        h = torch.tanh(h @ w.T + b)
    assert (model(x) - model.head(h)).abs().max() <= 1e-5


def test_unshared_repeat_is_a_module_list_of_scopes(compile_text):
    graph, model = compile_text(SHARED.replace("share: true, ", ""))
    assert isinstance(model.layers, torch.nn.ModuleList) and len(model.layers) == 3
    assert model.layers[1].fc is not model.layers[0].fc
    assert sum(p.numel() for p in model.parameters()) == graph.total_params == 3 * 72 + 18


def test_block_use_without_repeat_is_a_nested_module(compile_text):
    _, model = compile_text(SHARED.replace("repeat: 3, share: true, ", ""))
    assert list(model.state_dict())[:2] == ["layers.fc.weight", "layers.fc.bias"]


# ----- init overrides -----------------------------------------------------------
def _linear(init: str) -> str:
    return f"""
nngraph: 1
name: t
inputs:
  x: {{shape: [batch, 64], dtype: float32}}
graph:
  - {{name: fc, op: mlp, in: x, hidden: 128, init: {init}}}
outputs: [fc]
"""


@pytest.mark.parametrize("init,check", [
    ("zeros", lambda m: m.fc.up.weight.abs().sum() == 0 and m.fc.down.weight.abs().sum() == 0),
    ("{type: constant, value: 0.5}", lambda m: bool((m.fc.up.weight == 0.5).all())),
    ("{type: uniform, a: 2, b: 3}", lambda m: bool((m.fc.down.weight >= 2).all() and (m.fc.down.weight < 3).all())),
    ("{bias: ones}", lambda m: bool((m.fc.up.bias == 1).all() and (m.fc.down.bias == 1).all())),
    ("{up.weight: orthogonal}", lambda m: torch.allclose(m.fc.up.weight.T @ m.fc.up.weight, torch.eye(64), atol=1e-5)),
    ("{type: trunc_normal, std: 1, a: -0.5, b: 0.5}", lambda m: m.fc.up.weight.abs().max() <= 0.5),
])
def test_init_overrides(compile_text, init, check):
    _, model = compile_text(_linear(init))
    with torch.no_grad():
        assert check(model)


@pytest.mark.parametrize("init,message", [
    ("xavier", "unknown initializer 'xavier'"),
    ("{type: normal, stdev: 1}", "unknown argument 'stdev' for initializer 'normal'"),
    ("{type: normal, std: -1}", "normal: std must be > 0, got -1"),
    ("{type: constant}", "initializer 'constant' needs value"),
    ("{type: kaiming_normal, mode: fan_avg}", "kaiming_normal: mode must be one of fan_in, fan_out, got 'fan_avg'"),
    ("[zeros]", "init must be an initializer or a mapping of parameter -> initializer, got ['zeros']"),
])
def test_bad_init_is_an_error_at_validate_where_the_init_is_written(spec_file, init, message):
    """Checks that need no parameter shapes run at validate (nngraph/initializers.py), at the init value."""
    text = _linear(init)
    _, diag = check_spec(spec_file(text))
    (d,) = [d for d in diag if d.severity == "error"]
    line = text.splitlines()[6]
    assert d.message == f"node 'fc' (mlp): {message}"
    assert (d.pos.line, d.pos.col) == (6, line.index("init: ") + 7)


@pytest.mark.parametrize("init,message", [
    ("{gate.weight: zeros}", "init: no parameter 'gate.weight'"),
    ("{bias: xavier_uniform}", "init: xavier_uniform needs a parameter with at least 2 dims, 'up.bias' has shape [128]"),
])
def test_init_naming_a_missing_or_too_small_parameter_is_a_spec_error_at_the_node(compile_text, init, message):
    with pytest.raises(SpecError) as info:
        compile_text(_linear(init))
    (d,) = info.value.diagnostics
    assert d.message == f"node 'fc' (mlp): {message}"
    assert (d.pos.line, d.pos.col) == (6, 5)


def test_expressions_in_init_are_resolved_in_every_block_copy(compile_text):
    """``${...}`` inside ``init:`` (here a block parameter, as a layer scale) is resolved like any value."""
    _, model = compile_text("""
nngraph: 1
name: t
vars: {scale: 0.25}
inputs:
  x: {shape: [batch, 4], dtype: float32}
blocks:
  layer:
    inputs: [x]
    params: {layer_scale: 0.125}
    nodes:
      - {name: g, op: parameter, shape: [4], init: {type: constant, value: "${layer_scale}"}}
      - {name: y, op: mul, in: [x, g]}
    outputs: [y]
graph:
  - {name: a, block: layer, in: x, with: {layer_scale: "${scale * 2}"}}
  - {name: b, block: layer, in: a}
outputs: [b]
""")
    assert model.state_dict()["a.g"].tolist() == [0.5] * 4 and model.state_dict()["b.g"].tolist() == [0.125] * 4


def test_a_bad_expression_in_init_is_one_validate_error_not_one_per_copy(spec_file):
    text = """
nngraph: 1
name: t
inputs:
  x: {shape: [batch, 4], dtype: float32}
blocks:
  layer:
    inputs: [x]
    nodes:
      - {name: g, op: parameter, shape: [4], init: {type: constant, value: "${layer_scale}"}}
      - {name: y, op: mul, in: [x, g]}
    outputs: [y]
graph:
  - {name: a, block: layer, repeat: 3, in: x}
outputs: [a]
"""
    _, diag = check_spec(spec_file(text))
    (d,) = list(diag)
    assert d.message == "init: unknown name 'layer_scale' in expression"
    line = text.lstrip("\n").splitlines()[8]
    assert (d.pos.line, d.pos.col) == (9, line.index("init: ") + 7)


def test_every_initializer_of_the_catalog_has_its_torch_function():
    from nngraph.compilers.torch.init import APPLY
    from nngraph.initializers import INITIALIZER_DEFS

    assert APPLY.keys() == INITIALIZER_DEFS.keys()


def test_unknown_initializer_hint_suggests_the_closest(compile_text):
    with pytest.raises(SpecError) as info:
        compile_text(_linear("xavier_uniformm"))
    assert info.value.diagnostics[0].hint.startswith("did you mean 'xavier_uniform'?")


def test_init_on_a_node_without_parameters_is_an_error(run_op):
    with pytest.raises(SpecError, match=r"node 'n' \(relu\): has no parameters, so 'init' does not apply"):
        run_op("{name: n, op: relu, in: x, init: zeros}")


# ----- torch.compile / torch.export ---------------------------------------------
def test_torch_compile_eager_backend_matches():
    model = compile_spec(MLP)
    x = torch.randn(4, 784)
    compiled = torch.compile(model, backend="eager")
    assert (compiled(x) - model(x)).abs().max() <= 1e-5


def test_torch_export_with_dynamic_batch():
    model = compile_spec(MLP)
    x = torch.randn(4, 784)
    program = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    assert (program.module()(x) - model(x)).abs().max() <= 1e-5
    y = torch.randn(9, 784)
    assert (program.module()(y) - model(y)).abs().max() <= 1e-5
    assert set(program.state_dict) == set(model.state_dict())


@pytest.mark.skipif(not os.environ.get("NNGRAPH_SLOW_TESTS"), reason="inductor compiles C++ (~30-60 s on 2 cores); "
                    "set NNGRAPH_SLOW_TESTS=1")
def test_torch_compile_inductor_matches():
    model = compile_spec(MLP)
    x = torch.randn(4, 784)
    assert (torch.compile(model)(x) - model(x)).abs().max() <= 1e-5


def test_cnn_spec_exports_and_compiles():
    model = compile_spec(ROOT / "specs" / "lenet.yaml").eval()
    x = torch.randn(2, 1, 28, 28)
    program = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    y = torch.randn(5, 1, 28, 28)
    assert (program.module()(y) - model(y)).abs().max() <= 1e-5
    assert (torch.compile(model, backend="eager")(y) - model(y)).abs().max() <= 1e-5


def test_building_and_running_does_not_import_dynamo():
    """torch._dynamo costs ~3 s to import; `nngraph compile` and plain eager use must not pay for it."""
    import subprocess
    import sys
    code = ("import sys, torch; from nngraph.compilers.torch import compile_spec; "
            f"m = compile_spec({str(ROOT / 'specs' / 'lenet.yaml')!r}); m(torch.randn(1, 1, 28, 28)); "
            "print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_compile_error_inside_a_block_names_the_use(compile_text):
    text = """
nngraph: 1
name: t
inputs:
  x: {shape: [batch, 4], dtype: float32}
blocks:
  layer:
    inputs: [x]
    nodes:
      - {name: fc, op: linear, in: x, out: 4, init: {gate.weight: zeros}}
    outputs: [fc]
graph:
  - {name: enc, block: layer, in: x}
outputs: [enc]
"""
    with pytest.raises(SpecError) as info:
        compile_text(text)
    (d,) = info.value.diagnostics
    assert d.message == "node 'enc.fc' (linear): init: no parameter 'gate.weight'"
    assert len(d.notes) == 1 and d.notes[0].startswith("in block 'layer' (") and "used as 'enc' at " in d.notes[0]
