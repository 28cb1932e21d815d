"""``share: NAME``: a block use reuses the module of an earlier use (Siamese and tied encoders).

Checked against a hand-written torch oracle: one encoder called twice; parameters, state dict, outputs and
gradients (which accumulate over both calls) must agree. The export to ONNX keeps the sharing.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nngraph.compilers.torch import build_module, load_spec
from nngraph.compilers.torch.state import state_dict_for

SIAMESE = """
nngraph: 1
name: siamese
inputs:
  a: {shape: [batch, 8], dtype: float32}
  b: {shape: [batch, 8], dtype: float32}
blocks:
  enc:
    inputs: [x]
    params: {width: 6}
    nodes:
      - {name: fc, op: linear, in: x, out: "${width}"}
      - {name: act, op: tanh, in: fc}
      - {name: fc2, op: linear, in: act, out: 3}
    outputs: [fc2]
graph:
  - {name: enc_a, block: enc, in: a}
  - {name: enc_b, block: enc, in: b, share: enc_a}
  - {name: d, op: sub, in: [enc_a, enc_b]}
outputs: [d]
"""


class Oracle(nn.Module):
    """The Siamese network by hand: one encoder, applied to both inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.fc2 = nn.Linear(8, 6), nn.Linear(6, 3)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.fc(x)))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.encode(a) - self.encode(b)


@pytest.fixture
def siamese(spec_file):
    graph = load_spec(spec_file(SIAMESE))
    return graph, build_module(graph, seed=3)


def test_the_second_use_holds_no_parameters_of_its_own(siamese):
    graph, model = siamese
    assert graph.total_params == 8 * 6 + 6 + 6 * 3 + 3 == 75  # one encoder, not two (150)
    assert sum(p.numel() for p in model.parameters()) == 75
    assert model.enc_b.fc is model.enc_a.fc and model.enc_b.fc2 is model.enc_a.fc2
    assert list(state_dict_for(model)) == ["enc_a.fc.weight", "enc_a.fc.bias", "enc_a.fc2.weight", "enc_a.fc2.bias"]
    assert graph.block_uses[1].shares == "enc_a" and graph.block_uses[1].shared


def test_outputs_and_accumulated_gradients_match_the_hand_written_oracle(siamese):
    _, model = siamese
    oracle = Oracle()
    with torch.no_grad():
        for mine, theirs in ((model.enc_a.fc, oracle.fc), (model.enc_a.fc2, oracle.fc2)):
            theirs.weight.copy_(mine.weight)
            theirs.bias.copy_(mine.bias)
    a, b = torch.randn(5, 8, generator=torch.Generator().manual_seed(0)), torch.randn(5, 8)
    out, want = model(a, b), oracle(a, b)
    assert (out - want).abs().max() <= 1e-6
    assert (out).abs().max() > 1e-3  # different inputs through one encoder: not trivially zero
    (out ** 2).sum().backward()
    (want ** 2).sum().backward()
    for mine, theirs in ((model.enc_a.fc, oracle.fc), (model.enc_a.fc2, oracle.fc2)):
        assert (mine.weight.grad - theirs.weight.grad).abs().max() <= 1e-5
        assert (mine.bias.grad - theirs.bias.grad).abs().max() <= 1e-5
    # the gradient sums both calls: the encoder's gradient on a alone is different
    alone = Oracle()
    alone.load_state_dict(oracle.state_dict())
    (alone.encode(a) ** 2).sum().backward()
    assert (alone.fc.weight.grad - oracle.fc.weight.grad).abs().max() > 1e-4


TIED_TWICE = """
nngraph: 1
name: twice
inputs:
  b: {shape: [batch, 8], dtype: float32}
blocks:
  enc:
    inputs: [x]
    nodes:
      - {name: fc, op: linear, in: x, out: 8}
      - {name: act, op: tanh, in: fc}
    outputs: [act]
graph:
  - {name: enc_a, block: enc, in: enc_b}
  - {name: enc_b, block: enc, in: b, share: enc_a}
outputs: [enc_a]
"""


def test_a_shared_use_first_in_dependency_order_still_builds(spec_file):
    """enc_a reads enc_b's output, so enc_b runs first, yet enc_b reuses enc_a's module."""
    graph = load_spec(spec_file(TIED_TWICE))
    model = build_module(graph, seed=0)
    assert model.enc_b.fc is model.enc_a.fc and graph.total_params == 72
    b = torch.randn(2, 8)
    w, bias = model.enc_a.fc.weight, model.enc_a.fc.bias
    with torch.no_grad():
        want = torch.tanh(torch.tanh(b @ w.T + bias) @ w.T + bias)
        assert (model(b) - want).abs().max() <= 1e-6


def test_the_onnx_export_keeps_working_and_matches_torch(siamese, tmp_path):
    pytest.importorskip("onnxruntime")
    from nngraph.compilers.onnx.export import export_graph
    from nngraph.compilers.onnx.runner import make_session

    graph, model = siamese
    out = tmp_path / "siamese.onnx"
    export_graph(graph, out, module=model, verify=False)
    a, b = torch.randn(4, 8), torch.randn(4, 8)
    (got,) = make_session(out).run(None, {"a": a.numpy(), "b": b.numpy()})
    with torch.no_grad():
        assert abs(got - model(a, b).numpy()).max() <= 1e-5
