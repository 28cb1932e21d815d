"""The generated forward releases intermediates after their last use (as torch.fx's generated code does)."""

from __future__ import annotations

import weakref
from pathlib import Path

import torch

from nngraph.compilers.torch import compile_spec

ROOT = Path(__file__).resolve().parents[3]


def _forward(model, cls: str | None = None) -> list[str]:
    """The stripped lines of the forward of class ``cls`` (default: the model's own class) up to its return."""
    text = model.source.split(f"class {cls or type(model).__name__}(")[1]
    lines = [line.strip() for line in text.split("def forward")[1].splitlines()[1:]]
    return lines[:next(i for i, line in enumerate(lines) if line.startswith("return")) + 1]


def test_each_intermediate_is_deleted_after_its_last_reader():
    model = compile_spec(ROOT / "specs" / "mlp.yaml")
    code = [line for line in _forward(model) if line and not line.startswith("#")]
    assert code == [
        "body_0_act = self.body[0](x)  # [batch, 256]",
        "body_1_act = self.body[1](body_0_act)  # [batch, 256]",
        "del body_0_act",
        "head = self.head(body_1_act)  # [batch, 10]",
        "del body_1_act",
        "return head",
    ]
    for cls in ("DenseRelu", "DenseRelu2"):  # the block's own forward frees the same way
        block = [line for line in _forward(model, cls) if line and not line.startswith("#")]
        assert block == ["fc = self.fc(x)  # [batch, 256]", "act = torch.relu(fc)  # [batch, 256]", "del fc",
                         "return act"]


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
