"""Fixtures for the torch back-end tests: compile YAML text into a model."""

from __future__ import annotations

import pytest

from nngraph.compilers.torch import build_module, load_spec


@pytest.fixture
def compile_text(spec_file):
    """Write YAML text to a spec file, load it and compile it; returns (graph, model)."""

    def run(text: str, seed: int = 0, overrides: list[str] | None = None, name: str = "spec.yaml"):
        graph = load_spec(spec_file(text, name), overrides or [])
        return graph, build_module(graph, seed=seed)

    return run


def _spec(nodes: str | list[str], inputs: str = "x: {shape: [batch, 8], dtype: float32}", outputs: str = "[n]") -> str:
    ins = "\n".join(f"  {line.strip()}" for line in inputs.strip().splitlines())
    nodes = [nodes] if isinstance(nodes, str) else nodes
    body = "\n".join(f"  - {n}" for n in nodes)
    return f"nngraph: 1\nname: t\ninputs:\n{ins}\ngraph:\n{body}\noutputs: {outputs}\n"


@pytest.fixture
def spec_text():
    """``spec_text(nodes, inputs=..., outputs="[n]")``: a spec with graph inputs (one flow-YAML line each)
    and node lines; node i is on line ``5 + n_inputs + i``."""
    return _spec


@pytest.fixture
def run_op(compile_text):
    """Compile a one-or-more-node spec and return (model, graph)."""

    def run(nodes: str | list[str], inputs: str = "x: {shape: [batch, 8], dtype: float32}", outputs: str = "[n]",
            seed: int = 0):
        graph, model = compile_text(_spec(nodes, inputs, outputs), seed=seed)
        return model, graph

    return run


@pytest.fixture
def onnx_check(tmp_path):
    """``onnx_check(model, graph, inputs)``: export the compiled ``model`` of ``graph`` (the export traces it), run the
    file in ONNX Runtime on ``inputs`` (numpy arrays by input name) and return the max difference from torch
    relative to the output's scale (max |torch output|, at least 1); booleans and integers must match exactly."""
    pytest.importorskip("onnxruntime")
    import numpy as np
    import torch

    from nngraph.compilers.onnx.export import export_graph
    from nngraph.compilers.onnx.runner import make_session

    def run(model, graph, inputs: dict) -> float:
        out = tmp_path / "op.onnx"
        export_graph(graph, out, module=model, verify=False)
        session = make_session(out)
        declared = {i.name for i in session.get_inputs()}   # an input read only for its size may be folded away
        got = session.run(None, {k: v for k, v in inputs.items() if k in declared})
        with torch.no_grad():
            want = model(**{k: torch.from_numpy(v) for k, v in inputs.items()})
        wants = list(want.values()) if isinstance(want, dict) else list(want) if isinstance(want, tuple) else [want]
        worst = 0.0
        for g, w in zip(got, wants, strict=True):
            w = w.numpy()
            assert g.shape == w.shape and g.dtype == w.dtype, (g.shape, w.shape, g.dtype, w.dtype)
            if w.dtype.kind in "biu":
                assert np.array_equal(g, w)
                continue
            worst = max(worst, float(np.abs(g - w).max() / max(1.0, float(np.abs(w).max()))))
        return worst

    return run
