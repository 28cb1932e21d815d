"""Dropout compiled to torch: inverted dropout in training, identity in evaluation."""

from __future__ import annotations

import torch


def test_dropout_zeroes_p_and_rescales_in_training_identity_in_eval(run_op):
    model, _ = run_op("{name: n, op: dropout, in: x, p: 0.25}", "x: {shape: [batch, 1000], dtype: float32}")
    x = torch.ones(40, 1000)
    assert torch.equal(model.eval()(x), x)
    torch.manual_seed(0)
    y = model.train()(x)
    kept = y != 0
    assert abs(1 - kept.float().mean().item() - 0.25) < 0.01
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.75))
    assert "n = F.dropout(x, p=0.25, training=self.training)" in model.source
