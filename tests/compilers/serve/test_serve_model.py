"""The served model's start-up probes decide batching by measurement: an encoder whose attention sees every
position (no mask) must not be padded along seq, while rows still stack; a causal decoder and an encoder
with key padding from lengths are padded; stacked and padded runs are cut back exactly."""

from __future__ import annotations

import numpy as np

from nngraph.compilers.onnx.export import export_spec
from nngraph.compilers.serve.model import ServedModel

OPEN = """
nngraph: 1
name: open_encoder
inputs:
  tokens: {shape: [batch, seq], dtype: int64}
graph:
  - {name: emb, op: embedding, in: tokens, num: 10, dim: 8}
  - {name: pos, op: position_embedding, in: emb, type: learned, max_len: 16}
  - {name: attn, op: attention, in: pos, heads: 2}
outputs: {y: attn}
"""


def test_unmasked_attention_is_not_padded_but_rows_stack(spec_file, tmp_path):
    export_spec(spec_file(OPEN), tmp_path / "open.onnx", verify=False)
    model = ServedModel(tmp_path / "open.onnx")
    model.probe()
    assert model.batch_dim == "batch" and model.paddable == []
    assert model.probe_notes["seq"].startswith("not padded: output 'y' differs by")
    rng = np.random.default_rng(0)
    reqs = [model.check({"tokens": rng.integers(0, 10, (rows, seq))}) for rows, seq in ((1, 4), (2, 4), (1, 6))]
    assert model.key(reqs[0]) == model.key(reqs[1]) != model.key(reqs[2])  # only equal lengths share a run
    stacked = model.run(reqs[:2])
    for req, got in zip(reqs[:2], stacked):
        want = model.run([req])[0]
        assert got["y"].shape == want["y"].shape and np.max(np.abs(got["y"] - want["y"])) <= 1e-6


def test_padded_runs_are_cut_back_to_each_request(models):
    model = ServedModel(models["bert"])
    model.probe()
    assert model.paddable == ["seq"]
    rng = np.random.default_rng(1)
    reqs = [model.check({"tokens": rng.integers(1, 50, (1, s)), "token_types": np.zeros((1, s), np.int64),
                         "lengths": np.array([s])}) for s in (2, 16, 9)]
    assert len({model.key(r) for r in reqs}) == 1
    for req, got in zip(reqs, model.run(reqs)):
        for name, want in model.run([req])[0].items():
            assert got[name].shape == want.shape and np.max(np.abs(got[name] - want)) <= 1e-6
