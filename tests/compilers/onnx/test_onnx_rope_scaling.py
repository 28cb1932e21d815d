"""A scaled RoPE (llama3, YaRN: the rope_* vars `nngraph import-hf` fills from config.json's rope_scaling) exports to
ONNX and ONNX Runtime matches torch at two sizes (max |ORT - torch| <= 1e-4 · max(1, max |torch|)), whichever
attention kernel the export picks; the scaled model's logits differ from the unscaled one's, so the file does
carry the scaling."""

from __future__ import annotations

import pytest

from nngraph import load_spec
from nngraph.compilers.onnx.export import export_graph
from nngraph.compilers.onnx.inputs import sample_inputs
from nngraph.compilers.onnx.runner import make_session
from nngraph.compilers.torch import build_module

from onnx_support import SPECS, ort_vs_torch, randomize, run_sizes, torch_outputs

SMALL = ["vocab=64", "d_model=64", "heads=4", "kv_heads=2", "layers=2", "ffn=64"]
SCALED = {"llama3": ["rope_scaling=llama3", "rope_factor=8.0", "rope_original_len=16"],
          "yarn": ["rope_scaling=yarn", "rope_factor=4.0", "rope_original_len=4"]}


@pytest.mark.parametrize("scaling", SCALED)
def test_a_scaled_rope_spec_exports_and_onnxruntime_matches_torch(scaling, tmp_path):
    import onnx

    graph = load_spec(SPECS / "llama_style.yaml", SMALL + SCALED[scaling])
    module = build_module(graph, seed=0).eval()
    randomize(module)
    export_graph(graph, tmp_path / "m.onnx", module=module, verify=False)
    model = onnx.load(str(tmp_path / "m.onnx"))
    session = make_session(tmp_path / "m.onnx")
    plain = build_module(load_spec(SPECS / "llama_style.yaml", SMALL), seed=0).eval()
    plain.load_state_dict(module.state_dict())
    for seed, (batch, other) in enumerate(((2, 5), (3, 9))):
        inputs = sample_inputs(graph, run_sizes(model, graph, batch, other), seed=seed + 10)
        for name, (diff, scale) in ort_vs_torch(session, graph, module, inputs).items():
            assert diff <= 1e-4 * scale, f"{scaling}: {name} at batch {batch}, seq {other}: {diff:.3g}"
        scaled, unscaled = torch_outputs(module, graph, inputs)["logits"], torch_outputs(plain, graph, inputs)["logits"]
        assert abs(scaled - unscaled).max() > 1e-3
