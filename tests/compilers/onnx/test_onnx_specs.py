"""Every spec in specs/ (the seed zoo included) exports to valid ONNX that ONNX Runtime runs like torch.

Each spec is made small with --set (conftest.small_overrides), its weights are randomized (so
zero-initialized biases or tiny classifier inits cannot hide a mistake), it is exported once,
checked with onnx.checker(full_check=True), and ONE file is run at two sizes of every dynamic
dim (batch 2 and 4, other dims 5 and 9 -- neither is the trace size) against the torch model:
max |ORT - torch| <= 1e-4 · max(1, max |torch|).
"""

from __future__ import annotations

import onnx
import pytest

from nngraph.compilers.onnx.export import ExportError, export_graph
from nngraph.compilers.onnx.inputs import sample_inputs
from nngraph.compilers.onnx.metadata import read_metadata
from nngraph.compilers.onnx.runner import make_session
from nngraph.compilers.torch import build_module
from nngraph import load_spec

from onnx_support import SPECS, ort_vs_torch, randomize, run_sizes, small_overrides

SPEC_FILES = sorted(SPECS.rglob("*.yaml"))
TOL = 1e-4

#: specs that do not export, by file stem, with the reason; the test checks that the export does fail
NOT_EXPORTABLE = {
    "kalman_filter": "the Kalman recursion is a Python loop over the dynamic sequence with Cholesky "
                     "factorizations and solves (aten::diag_embed, linalg_cholesky, cholesky_solve have no ONNX "
                     "translation in the TorchScript exporter) and there is no Scan lowering for kalman_filter",
}


@pytest.mark.parametrize("path", SPEC_FILES, ids=[str(p.relative_to(SPECS).with_suffix("")) for p in SPEC_FILES])
def test_spec_exports_and_onnxruntime_matches_torch_at_two_sizes(path, onnx_out):
    graph = load_spec(path, small_overrides(path))
    module = build_module(graph, seed=0).eval()
    randomize(module)
    out = onnx_out / f"{path.stem}.onnx"
    if path.stem in NOT_EXPORTABLE:
        with pytest.raises(ExportError):
            export_graph(graph, out, module=module, verify=False, spec_file=str(path))
        return
    result = export_graph(graph, out, module=module, verify=False, spec_file=str(path))

    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    meta = read_metadata(model)
    assert meta["spec"] == graph.name and meta["fingerprint"] == graph.fingerprint()
    # the default opset is the lowest the export needs: 23 (IR 11) only where the standard Attention op is chosen
    # (mixtral_style's small sizes: ORT's rotary needs head_dim % 16 == 0, MultiHeadAttention no kv groups), else
    # at most 20 (bias_gelu's Gelu anchor; IR 9)
    opset = next(o.version for o in model.opset_import if o.domain == "")
    standard_attention = any(c.kernel.name == "onnx-attention" for c in result.choices.values())
    assert meta["opset"] == str(opset) == str(result.opset)
    assert opset == 23 if standard_attention else 17 <= opset <= 20
    assert model.ir_version == {17: 8, 18: 8, 19: 9, 20: 9, 23: 11}[opset]
    attention = {n.name for n in graph.nodes.values() if n.op == "attention"}
    assert set(meta["attention_kernels"]) == attention
    for name in result.dynamic:  # a dynamic dim is a named dim of the file's inputs
        assert any(d.dim_param == name for i in model.graph.input for d in i.type.tensor_type.shape.dim)

    session = make_session(out)
    for seed, (batch, other) in enumerate(((2, 5), (4, 9))):
        inputs = sample_inputs(graph, run_sizes(model, graph, batch, other), seed=seed + 10)
        for name, (diff, scale) in ort_vs_torch(session, graph, module, inputs).items():
            assert diff <= TOL * scale, f"{path.stem} output {name} at batch {batch}, dims {other}: {diff:.3g}"
