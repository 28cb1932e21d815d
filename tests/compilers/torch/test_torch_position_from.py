"""``position_from``: attention nodes of a stack read one position table (one Parameter, one state-dict key).

Oracle: the same stack with a table per node (no ``position_from``) loaded with copies of the one table
computes the same outputs, and the shared table's gradient is the sum of the per-node tables' gradients.
"""

from __future__ import annotations

import pytest
import torch

from nngraph.compilers.torch import build_module, load_spec
from nngraph.compilers.torch.state import state_dict_for

SPEC = """
nngraph: 1
name: pf
inputs:
  x: {{shape: [batch, 5, 16]}}
blocks:
  layer:
    inputs: [x]
    nodes:
      - {{name: a, op: attention, in: x, heads: 2, mask: causal,
         position: {{type: t5_bias, num_buckets: 8, max_distance: 16, bidirectional: false}}{ref}}}
    outputs: [a]
graph:
  - {{name: body, block: layer, repeat: 3, in: x}}
outputs: [body]
"""
TABLE = "rel_bias.weight"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    path = tmp_path_factory.mktemp("pf")
    (path / "shared.yaml").write_text(SPEC.format(ref=", position_from: /body.0.a"))
    (path / "own.yaml").write_text(SPEC.format(ref=""))
    shared_graph = load_spec(path / "shared.yaml")
    shared, own = build_module(shared_graph, seed=1), build_module(load_spec(path / "own.yaml"), seed=1)
    state = state_dict_for(shared)
    for i in (1, 2):
        state[f"body.{i}.a.{TABLE}"] = state[f"body.0.a.{TABLE}"]
    own.load_state_dict(state)
    return shared_graph, shared, own


def test_one_table_in_the_state_dict_and_the_parameter_count(models):
    graph, shared, _ = models
    keys = [k for k in state_dict_for(shared) if k.endswith(TABLE)]
    assert keys == [f"body.0.a.{TABLE}"]
    assert sum(p.numel() for p in shared.parameters()) == graph.total_params == 3 * 4 * (16 * 16 + 16) + 8 * 2


def test_the_shared_table_gradient_is_the_sum_over_its_users(models):
    _, shared, own = models
    x = torch.randn(3, 5, 16, generator=torch.Generator().manual_seed(0))
    out_shared, out_own = shared(x), own(x)
    assert (out_shared - out_own).abs().max() <= 1e-6
    out_shared.square().sum().backward()
    out_own.square().sum().backward()
    per_node = [getattr(own.body[i].a, "rel_bias").weight.grad for i in range(3)]
    assert all(g.abs().max() > 0 for g in per_node)  # every user contributes
    got = shared.body[0].a.rel_bias.weight.grad
    assert (got - sum(per_node)).abs().max() <= 1e-5 * sum(per_node).abs().max()


def test_the_onnx_export_matches_torch(models, tmp_path):
    pytest.importorskip("onnxruntime")
    from nngraph.compilers.onnx.export import export_graph
    from nngraph.compilers.onnx.runner import make_session

    graph, shared, _ = models
    out = tmp_path / "pf.onnx"
    export_graph(graph, out, module=shared, verify=False)
    x = torch.randn(2, 5, 16)
    (got,) = make_session(out).run(None, {"x": x.numpy()})
    with torch.no_grad():
        assert abs(got - shared(x).numpy()).max() <= 1e-5
