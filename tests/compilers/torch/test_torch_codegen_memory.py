"""The generated forward releases intermediates after their last use (as torch.fx's generated code does)."""

from __future__ import annotations

import weakref
from pathlib import Path

import torch

from nngraph.compilers.torch import compile_spec

ROOT = Path(__file__).resolve().parents[3]


def _forward(model) -> list[str]:
    return [line.strip() for line in model.source.split("def forward")[1].splitlines()[1:]]


def test_each_intermediate_is_deleted_after_its_last_reader():
    body = _forward(compile_spec(ROOT / "specs" / "mlp.yaml"))
    code = [line for line in body if line and not line.startswith("#")]
    assert code == [
        "body_0_fc = self.body[0].fc(x)  # [batch, 256]",
        "body_0_act = torch.relu(body_0_fc)  # [batch, 256]",
        "del body_0_fc",
        "body_1_fc = self.body[1].fc(body_0_act)  # [batch, 256]",
        "del body_0_act",
        "body_1_act = torch.relu(body_1_fc)  # [batch, 256]",
        "del body_1_fc",
        "head = self.head(body_1_act)  # [batch, 10]",
        "del body_1_act",
        "return head",
    ]


def test_values_read_twice_outputs_and_inputs_are_kept_until_needed(compile_text):
    _, model = compile_text("""
    nngraph: 1
    name: t
    inputs:
      x: {shape: [batch, 4], dtype: float32}
    graph:
      - {name: a, op: relu, in: x}
      - {name: b, op: tanh, in: a}
      - {name: c, op: add, in: [a, b]}
      - {name: d, op: sigmoid, in: c}
    outputs: {d: d, b: b}
    """)
    code = [line.split("  #")[0] for line in _forward(model) if line and not line.startswith("#")]
    assert code == ["a = torch.relu(x)", "b = torch.tanh(a)", "c = a + b", "del a", "d = torch.sigmoid(c)", "del c",
                    "return {'d': d, 'b': b}"]
    x = torch.randn(3, 4)
    out = model(x)
    assert torch.equal(out["d"], torch.sigmoid(torch.relu(x) + torch.tanh(torch.relu(x))))


def test_an_output_nobody_reads_is_deleted_at_once(compile_text):
    _, model = compile_text("""
    nngraph: 1
    name: t
    inputs:
      x: {shape: [batch, 5, 3], dtype: float32}
    graph:
      - {name: rnn, op: lstm, in: x, hidden: 4}
      - {name: y, op: relu, in: rnn.out}
    outputs: {y: y, h: rnn.h}
    """)
    code = [line.split("  #")[0] for line in _forward(model) if line and not line.startswith("#")]
    assert code[:2] == ["rnn_out, rnn_h, rnn_c = self.rnn(x)", "del rnn_c"]
    assert model(torch.randn(2, 5, 3))["y"].shape == (2, 5, 4)


def test_an_intermediate_is_freed_before_the_forward_returns():
    model = compile_spec(ROOT / "specs" / "mlp.yaml")
    seen: dict[str, object] = {}
    model.body[0].fc.register_forward_hook(lambda m, i, o: seen.update(first=weakref.ref(o)))
    model.head.register_forward_pre_hook(lambda m, i: seen.update(alive=seen["first"]() is not None))
    with torch.no_grad():
        model(torch.randn(2, 784))
    assert seen["alive"] is False  # body.0.fc's output was released before head ran
