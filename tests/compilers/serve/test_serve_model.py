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


def _bert_feeds(rows: int, seq: int) -> dict:
    return {"tokens": [[1] * seq] * rows, "token_types": [[0] * seq] * rows, "lengths": [seq] * rows}


def _serve_in_process(model, limits, requests):
    """The answers of the app (no socket: httpx's ASGI transport) to ``requests``, all sent at once."""
    import asyncio

    import httpx

    from nngraph.compilers.serve.app import Server, make_app

    async def main():
        server = Server(model, limits)
        server.batcher.start()
        transport = httpx.ASGITransport(app=make_app(server))
        async with httpx.AsyncClient(transport=transport, base_url="http://serve") as client:
            answers = await asyncio.gather(*(client.post("/v1/infer", json={"inputs": r}) for r in requests))
        await server.batcher.stop()
        return answers, server.metrics

    return asyncio.run(main())


def test_an_unanswered_request_gets_504_and_is_dropped_from_its_batch(models):
    from nngraph.compilers.serve.app import Limits

    model = ServedModel(models["bert"])
    model.probe()
    answers, metrics = _serve_in_process(model, Limits(timeout=0.05, window=0.5, max_wait=0.5), [_bert_feeds(1, 3)])
    assert answers[0].status_code == 504 and "no answer within 0.05 s" in answers[0].json()["error"]
    assert metrics.batch_rows._sum.get() == 0  # its batch ran nothing


def test_a_batch_never_exceeds_max_batch_rows(models):
    from nngraph.compilers.serve.app import Limits

    model = ServedModel(models["bert"])
    model.probe()
    requests = [_bert_feeds(2, 4), _bert_feeds(2, 5), _bert_feeds(1, 6), _bert_feeds(2, 3)]
    answers, metrics = _serve_in_process(model, Limits(max_batch=3, window=0.2, max_wait=0.2), requests)
    assert [a.status_code for a in answers] == [200] * 4
    counts = {s.labels["le"]: s.value for f in metrics.registry.collect() if f.name == "nngraph_batch_rows"
              for s in f.samples if s.name.endswith("_bucket")}
    # 7 rows in 3 runs of at most 3 rows (a request that would overfill a batch opens the next one)
    assert counts["3.0"] == counts["+Inf"] == 3 and metrics.batch_rows._sum.get() == 7
    for req, answer in zip(requests, answers):
        want = model.run([model.check({k: np.asarray(v) for k, v in req.items()})])[0]
        for name, ref in want.items():
            assert np.max(np.abs(np.asarray(answer.json()["outputs"][name]) - ref)) <= 1e-6


CONV = """
nngraph: 1
name: conv_probe
dims: {L: {min: 5}}
inputs:
  x: {shape: [batch, 2, L], dtype: float32}
graph:
  - {name: conv, op: conv1d, in: x, out: 3, kernel: 5}
outputs: {y: conv}
"""


def test_the_probe_grows_its_sizes_until_the_model_runs(spec_file, tmp_path):
    export_spec(spec_file(CONV), tmp_path / "conv.onnx", verify=False)
    model = ServedModel(tmp_path / "conv.onnx")
    model.probe()  # at L = 3 a 5-wide convolution has no output: the probe runs at 16
    assert model.batch_dim == "batch" and model.probe_notes["batch"] == "rows stack exactly (probed)"
    assert model.paddable == [] and "not padded" in model.probe_notes["L"]  # padding L lengthens the output
