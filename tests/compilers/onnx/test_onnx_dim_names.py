"""ONNX dim names of symbolic output dims come from the canonical (simplified) dim expressions."""

from __future__ import annotations

import onnx
from typer.testing import CliRunner

from nngraph import cli

SPEC = """nngraph: 1
name: dims
inputs:
  x: {shape: [batch, 4, time]}
graph:
  - {name: c1, op: conv1d, in: x, out: 4, kernel: 3, padding: 1}
  - {name: c2, op: conv1d, in: c1, out: 4, kernel: 3, padding: 1}
  - {name: c3, op: conv1d, in: c2, out: 4, kernel: 5, padding: 2}
  - {name: down, op: conv1d, in: c3, out: 4, kernel: 3, stride: 2, padding: 1}
outputs: {same: c3, half: down}
"""


def test_output_dim_names_are_the_simplified_expressions(tmp_path):
    spec, out = tmp_path / "dims.yaml", tmp_path / "dims.onnx"
    spec.write_text(SPEC)
    res = CliRunner().invoke(cli.app, ["export", str(spec), "-o", str(out)])
    assert res.exit_code == 0, res.output
    names = {o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim]
             for o in onnx.load(str(out)).graph.output}
    # time+2-2-1+1 and friends before the algebra; (time+2-2-1)//2+1 is (time+1)//2
    assert names == {"same": ["batch", 4, "time"], "half": ["batch", 4, "time_1_2"]}
