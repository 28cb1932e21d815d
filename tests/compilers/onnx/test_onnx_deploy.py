"""ONNX files that deploy: the lowest opset (and IR) the file needs, torch parameter names on the initializers, the spec's doc.

The default opset is the highest that the chosen kernels, lowerings and fusions declare: an MLP or CNN
gets the floor 17 (IR 8), GAT's max-scatter 18, ORT's bias_gelu fusion 20 (its anchor Gelu), the
standard Attention op 23 (IR 11); contrib ops live in their own domain and raise nothing. Every file is
run in ONNX Runtime against the torch model (max |ORT - torch| <= 1e-4 · max(1, |torch|)) at sizes
that are not the trace sizes.
"""

from __future__ import annotations

import onnx
import pytest

from nngraph import load_spec
from nngraph.compilers.onnx.export import ExportError, export_graph
from nngraph.compilers.onnx.inputs import sample_inputs
from nngraph.compilers.onnx.metadata import read_metadata
from nngraph.compilers.onnx.opsets import ir_version
from nngraph.compilers.onnx.runner import make_session
from nngraph.compilers.torch import build_module

from onnx_support import SPECS, ort_vs_torch, randomize, run_sizes, small_overrides

TOL = 1e-4
GPT_SMALL = ["layers=1", "d_model=32", "heads=2", "vocab=40", "ctx=32"]


def _build(stem: str, overrides: list[str] | None = None):
    path = next(SPECS.rglob(f"{stem}.yaml"))
    graph = load_spec(path, small_overrides(path) if overrides is None else overrides)
    module = build_module(graph, seed=0).eval()
    randomize(module)
    return graph, module


def _export(tmp_path, stem: str, overrides: list[str] | None = None, **kwargs):
    """(graph, module, loaded file, result) of a default export (verify off: the test runs ORT itself)."""
    graph, module = _build(stem, overrides)
    out = tmp_path / f"{stem}.onnx"
    result = export_graph(graph, out, module=module, verify=False, **kwargs)
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    return graph, module, model, result


def _default_opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain == "")


def _assert_ort_matches_torch(path, graph, module) -> None:
    """ORT on the file vs the torch model at batch 2, other dims 5 (the export traced at 3 and 11+)."""
    model = onnx.load(str(path), load_external_data=False)
    inputs = sample_inputs(graph, run_sizes(model, graph, 2, 5), seed=7)
    for name, (diff, scale) in ort_vs_torch(make_session(path), graph, module, inputs).items():
        assert diff <= TOL * scale, (name, diff)


def _assert_parameter_names(model: onnx.ModelProto, module) -> None:
    """Every torch parameter is an initializer under its own name, or ``<name>.T`` when stored transposed."""
    inits = {t.name for t in model.graph.initializer}
    produced = {o for n in model.graph.node for o in n.output}   # a large tied copy becomes Transpose(<name>)
    for name, _ in module.named_parameters():
        assert name in inits or f"{name}.T" in inits | produced, (name, sorted(inits))
    assert not any(i.name in inits for i in model.graph.input)   # initializers are not overridable inputs


def test_ir_version_is_the_lowest_the_opset_needs():
    assert {o: ir_version(o) for o in range(17, 24)} == {17: 8, 18: 8, 19: 9, 20: 9, 21: 10, 22: 10, 23: 11}


@pytest.mark.parametrize("stem", ["mlp", "cnn_digits", "lenet"])
def test_mlp_and_cnns_export_at_opset_17_with_parameter_names_and_the_spec_doc(stem, tmp_path):
    graph, module, model, result = _export(tmp_path, stem)
    assert result.opset == _default_opset(model) == 17 and model.ir_version == 8
    assert [o.domain for o in model.opset_import] == [""]
    meta = read_metadata(model)
    assert meta["opset"] == "17" and meta["opset_reason"].startswith("the floor")
    _assert_parameter_names(model, module)
    assert model.graph.name == graph.name == stem
    assert model.doc_string == graph.doc and "digits" in model.doc_string
    _assert_ort_matches_torch(tmp_path / f"{stem}.onnx", graph, module)


def test_gpt_contrib_kernel_leaves_the_default_opset_alone_and_names_tied_weights(tmp_path):
    graph, module, model, result = _export(tmp_path, "gpt_char", GPT_SMALL, fuse=False)
    assert result.choices["h.0.attn"].kernel.name == "ort-gqa"
    assert _default_opset(model) == 17 and model.ir_version == 8
    assert any(o.domain == "com.microsoft" for o in model.opset_import)
    names = {t.name for t in model.graph.initializer}
    assert {"h.0.attn.qkv.weight.T", "wte.weight", "wte.weight.T"} <= names   # the LM head reads wte transposed
    _assert_parameter_names(model, module)
    _assert_ort_matches_torch(tmp_path / "gpt_char.onnx", graph, module)


def test_bias_gelu_fusion_raises_the_opset_to_its_gelu_anchor(tmp_path):
    graph, module, model, result = _export(tmp_path, "gpt_char", GPT_SMALL)
    assert result.fusions == {"bias_gelu": 1} and _default_opset(model) == 20 and model.ir_version == 9
    assert "fusion bias_gelu needs 20" in result.explain().splitlines()[0]
    _assert_parameter_names(model, module)
    _assert_ort_matches_torch(tmp_path / "gpt_char.onnx", graph, module)


def test_the_standard_attention_kernel_exports_opset_23(tmp_path):
    graph, module, model, result = _export(tmp_path, "gpt_char", GPT_SMALL, target="onnx")
    assert result.choices["h.0.attn"].kernel.name == "onnx-attention"
    assert _default_opset(model) == 23 and model.ir_version == 11 and "Attention" in {n.op_type for n in model.graph.node}
    assert "node 'h.0.attn' (onnx-attention kernel) needs 23" in read_metadata(model)["opset_reason"]
    _assert_parameter_names(model, module)
    _assert_ort_matches_torch(tmp_path / "gpt_char.onnx", graph, module)


def test_gat_needs_18_for_its_max_scatter_and_an_older_opset_is_refused(tmp_path):
    graph, module, model, result = _export(tmp_path, "gat")
    assert _default_opset(model) == 18 and model.ir_version == 8
    assert any(n.op_type == "ScatterElements" and any(a.s == b"max" for a in n.attribute) for n in model.graph.node)
    _assert_ort_matches_torch(tmp_path / "gat.onnx", graph, module)
    with pytest.raises(ExportError, match="opset 17 is too old for this model: node 'gat1' \\(gat_conv\\) needs "
                                          "opset 18: ScatterElements with reduction max"):
        export_graph(graph, None, module=module, opset=17, verify=False)


def test_an_explicit_opset_is_kept(tmp_path):
    graph, module, model, result = _export(tmp_path, "mlp", opset=21)
    assert _default_opset(model) == 21 and model.ir_version == 10
    assert read_metadata(model)["opset_reason"] == "as asked"
    _assert_ort_matches_torch(tmp_path / "mlp.onnx", graph, module)
