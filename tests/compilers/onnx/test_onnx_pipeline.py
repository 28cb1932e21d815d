"""The export's structure: a config value, per-op registered lowerings, the torch back end's trace hook.

The numbers of the exported files are pinned by the other tests of this folder; these pin the
mechanisms that replaced the central lists and the patching of other modules' globals.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from nngraph import load_spec
from nngraph.compilers.onnx.config import ExportConfig
from nngraph.compilers.onnx.export import ExportError, export_graph, lowering_of
from nngraph.compilers.onnx.lowering import LOWERINGS, declare, discover, stateful_ops
from nngraph.compilers.onnx.pipeline import stages
from nngraph.compilers.onnx.pipeline.options import check_kv
from nngraph.compilers.torch import build_module
from nngraph.compilers.torch.ops import graph_nn
from nngraph.compilers.torch.trace_hooks import replacing
from nngraph.registry import get_op

from onnx_support import SPECS, small_overrides


def test_the_stages_run_in_the_documented_order():
    assert [s.__name__ for s in stages()] == [
        "check_options", "plan_export", "build_model", "trace", "replace_placeholders", "run_fusions",
        "convert_precision", "write_metadata", "verify", "write"]


def test_the_config_is_frozen_and_keyword_options_are_the_same_config():
    cfg = ExportConfig(kv_cache=True, dims={"batch": 2})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.kv_cache = False  # type: ignore[misc]
    assert ExportConfig.of({"kv_cache": True, "dims": {"batch": 2}}) == cfg
    with pytest.raises(TypeError, match="unknown export option"):
        ExportConfig.of({"kv_cahce": True})
    with pytest.raises(TypeError, match="not both"):
        export_graph(None, None, cfg, verify=False)


def test_a_config_and_the_same_keywords_export_the_same_file(tmp_path):
    path = SPECS / "mlp.yaml"
    graph = load_spec(path, small_overrides(path))
    module = build_module(graph, seed=0).eval()
    a = export_graph(graph, tmp_path / "a.onnx", ExportConfig(verify=False, spec_file="x"), module=module)
    b = export_graph(graph, tmp_path / "b.onnx", module=module, verify=False, spec_file="x")
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()
    assert a.opset == b.opset == 17


def test_every_lowering_is_of_a_known_op_and_registered_once():
    table = discover()
    assert all(get_op(op) is not None for op in table), [op for op in table if get_op(op) is None]
    with pytest.raises(ValueError, match="two ONNX lowerings"):
        declare("mamba", "again")
    assert table["gat_conv"].needs is not None and table["global_pool"].function is not None
    assert {"mamba", "lstm", "gru", "rnn", "linear_attention", "performer_attention",
            "linformer_attention"} == stateful_ops()


def test_one_registration_reaches_explain_and_the_kv_cache_check():
    """A new op's lowering is one ``declare``: ``lowering_of`` (``--explain``, metadata) and ``--kv-cache`` see it."""
    graph = load_spec(SPECS / "gpt_char.yaml", small_overrides(SPECS / "gpt_char.yaml"))
    op = next(n.op for n in graph.nodes.values() if n.op not in LOWERINGS and n.op != "attention")
    attn = [n for n in graph.nodes.values() if n.op == "attention"]
    check_kv(graph, attn)  # fine before
    try:
        declare(op, "a test lowering", stateful=True)
        assert set(lowering_of(graph).values()) == {"a test lowering"}
        with pytest.raises(ExportError, match="state that is not a key/value cache"):
            check_kv(graph, attn)
    finally:
        del LOWERINGS[op]


def test_the_trace_hook_replaces_global_pool_only_inside_the_block():
    x, batch = torch.arange(12.0).view(6, 2), torch.tensor([0, 0, 1, 1, 1, 2])
    eager = graph_nn.global_pool(x, batch, "mean")
    calls = []

    def stand_in(*args, **kwargs):
        calls.append(args)
        return "replaced"

    with replacing({"global_pool": stand_in}):
        assert graph_nn.global_pool(x, batch, "mean") == "replaced"
    assert len(calls) == 1
    torch.testing.assert_close(graph_nn.global_pool(x, batch, "mean"), eager)
    with pytest.raises(KeyError, match="not replaceable"):
        with replacing({"no_such_function": stand_in}):
            pass


def test_the_onnx_lowering_of_global_pool_equals_the_torch_function():
    """The stand-in the export traces computes what the torch back end computes (sum, mean, max; empty graphs)."""
    lowered = discover()["global_pool"].function
    x = torch.randn(7, 3)
    batch = torch.tensor([0, 0, 1, 1, 1, 3, 3])  # graph 2 is empty
    for mode in ("sum", "mean", "max"):
        torch.testing.assert_close(lowered(x, batch, mode), graph_nn.global_pool(x, batch, mode))
        torch.testing.assert_close(lowered(x, None, mode), graph_nn.global_pool(x, None, mode))


def test_planning_an_export_imports_no_torch():
    """``nngraph export SPEC`` without ``-o`` prints the plan: kernels, opset and lowerings come from declarations."""
    import json
    import subprocess
    import sys

    code = ("import json, sys\nfrom nngraph import load_spec\n"
            "from nngraph.compilers.onnx.export import explain_text, lowering_of, opset_for, plan\n"
            "out = {}\n"
            "for spec in ('mamba_style', 'gin_graph', 'switch_style'):\n"
            "    g = load_spec(f'specs/{spec}.yaml')\n"
            "    c = plan(g, 'ort-cpu')\n"
            "    out[spec] = [opset_for(g, c, 'ort-cpu', None, None)[0], sorted(set(lowering_of(g).values()))]\n"
            "print(json.dumps({'torch': 'torch' in sys.modules, 'out': out}))\n")
    root = SPECS.parent
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["torch"] is False
    assert report["out"]["mamba_style"][1] == ["selective scan as one ONNX Scan over the sequence (state carried inside)"]
    assert report["out"]["gin_graph"][1] == [
        "gather + ScatterElements(add) message passing (dynamic nodes/edges)",
        "one-hot [graphs, nodes] pooling with the graph count from the batch vector"]
