"""`nngraph serve` as a real process on 127.0.0.1, driven with a real HTTP client (httpx).

The oracle of every answer is ONNX Runtime run in this process on the same file with the same request
alone: batched answers (stacked, padded along ``seq``) must equal it to 1e-6.
"""

from __future__ import annotations

import io
import json
import re
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from nngraph.compilers.onnx.runner import open_model
from nngraph.compilers.serve.process import ServerProcess

SEQS = (3, 16, 7, 11, 5, 16, 9, 2)


def bert_request(rng: np.random.Generator, rows: int, seq: int) -> dict[str, np.ndarray]:
    """A BERT request: ids 1..49 and segments 0/1, the last rows padded by the client itself (lengths < seq)."""
    lengths = np.full(rows, seq, np.int64)
    lengths[1:] = rng.integers(1, seq + 1, rows - 1)
    return {"tokens": rng.integers(1, 50, (rows, seq)), "token_types": rng.integers(0, 2, (rows, seq)),
            "lengths": lengths}


def alone(session, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def test_concurrent_requests_are_batched_and_each_answer_equals_the_request_alone(bert_server, models):
    session = open_model(models["bert"])
    rng = np.random.default_rng(0)
    requests = [bert_request(rng, rows, seq) for rows, seq in zip((1, 2, 1, 3, 1, 2, 1, 1), SEQS)] * 2
    barrier = threading.Barrier(len(requests))

    def call(feeds):
        with bert_server.client() as client:
            barrier.wait()
            return client.post("/v1/infer", json={"inputs": {k: v.tolist() for k, v in feeds.items()}})

    with ThreadPoolExecutor(len(requests)) as pool:
        answers = list(pool.map(call, requests))
    for feeds, answer in zip(requests, answers):
        assert answer.status_code == 200, answer.text
        doc = answer.json()
        want = alone(session, feeds)
        for name, ref in want.items():
            got = np.asarray(doc["outputs"][name], np.float32)
            assert got.shape == ref.shape == tuple(doc["shapes"][name])
            assert np.max(np.abs(got - ref)) <= 1e-6
    runs = _metric(bert_server, "nngraph_batch_requests", "_count")
    assert runs < len(requests)  # at least one model run answered several requests
    # each answer's Server-Timing names its batch: a request's rows are part of it, and the requests that say
    # they shared a batch (same run time and rows) hold exactly that many rows together
    timings = [re.fullmatch(r'queue;dur=(\d+\.\d+), run;dur=(\d+\.\d+);desc="(\d+) rows"', a.headers["server-timing"])
               for a in answers]
    batches: dict[tuple[str, str], int] = {}
    for feeds, timing in zip(requests, timings):
        assert int(timing[3]) >= len(feeds["lengths"]) and float(timing[2]) > 0
        batches[(timing[2], timing[3])] = batches.get((timing[2], timing[3]), 0) + len(feeds["lengths"])
    assert all(rows == int(n) for (_, n), rows in batches.items()) and len(batches) < len(requests)
    assert _metric(bert_server, "nngraph_batch_rows", "_sum") >= sum(len(r["lengths"]) for r in requests)


def test_npz_in_and_out_exactly(bert_server, models):
    feeds = bert_request(np.random.default_rng(1), 2, 6)
    buf = io.BytesIO()
    np.savez(buf, **feeds)
    with bert_server.client() as client:
        answer = client.post("/v1/infer", content=buf.getvalue(),
                             headers={"Content-Type": "application/x-npz", "Accept": "application/x-npz"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/x-npz"
    got = np.load(io.BytesIO(answer.content))
    for name, ref in alone(open_model(models["bert"]), feeds).items():
        np.testing.assert_array_equal(got[name], ref)


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


GOOD = {"tokens": [[1, 2, 3]], "token_types": [[0, 0, 1]], "lengths": [3]}
BAD = [
    (b'{"inputs": {"tokens": [[1, 2', 400, "malformed JSON"),
    (b'[1, 2, 3]', 422, '{"inputs"'),
    (json.dumps({"inputs": {**GOOD, "tokenz": [[1]]}}), 422, "no input 'tokenz'; did you mean 'tokens'"),
    (json.dumps({"inputs": {k: v for k, v in GOOD.items() if k != "lengths"}}), 422, "missing input 'lengths' [batch]"),
    (json.dumps({"inputs": {**GOOD, "tokens": [[1.5, 2, 3]]}}), 422, "input 'tokens': the model takes int64"),
    (json.dumps({"inputs": {**GOOD, "tokens": [1, 2, 3]}}), 422, "input 'tokens' has rank 1 [3], the model takes rank 2"),
    (json.dumps({"inputs": {**GOOD, "lengths": [3, 3]}}), 422, "dim 'batch' is 1 in input 'tokens' but 2 in input 'lengths'"),
    (json.dumps({"inputs": {**GOOD, "tokens": [[1, 2], [3]]}}), 422, "input 'tokens': not a rectangular array"),
    (json.dumps({"inputs": {**GOOD, "tokens": "/etc/passwd"}}), 422, "input 'tokens': not a rectangular array"),
    (b"PK\x03\x04 not a zip", 400, "not a readable .npz archive"),
]


@pytest.mark.parametrize("body,status,message", BAD, ids=[m[:24] for _, _, m in BAD])
def test_bad_requests_get_4xx_naming_the_input_and_what_the_model_takes(bert_server, body, status, message):
    kind = "application/x-npz" if isinstance(body, bytes) and body.startswith(b"PK") else "application/json"
    with bert_server.client() as client:
        answer = client.post("/v1/infer", content=body, headers={"Content-Type": kind})
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"]


def test_npz_of_the_wrong_dtype_is_named(bert_server):
    feeds = {k: np.asarray(v) for k, v in GOOD.items()} | {"tokens": np.asarray([[1, 2, 3]], np.float32)}
    with bert_server.client() as client:
        answer = client.post("/v1/infer", content=_npz(**feeds), headers={"Content-Type": "application/x-npz"})
    assert answer.status_code == 422
    assert "input 'tokens' is float32, the model takes int64" in answer.json()["error"]


def test_answers_without_a_body_and_the_next_on_the_same_connection(bert_server):
    """The head a HEAD answer has no body to travel with goes out on its own (compilers/serve/protocol.py)."""
    with bert_server.client() as client:
        head, get = client.head("/health"), client.get("/health")
    assert head.status_code == get.status_code == 200 and head.content == b"" and get.json() == {"status": "ok"}
    assert head.headers["content-length"] == get.headers["content-length"]


def test_metadata_shows_symbolic_dims_kernels_and_why_and_how_it_batches(bert_server):
    with bert_server.client() as client:
        meta = client.get("/metadata").json()
    assert meta["spec"] == "bert_encoder"
    assert {i["name"]: i["shape"] for i in meta["inputs"]} == {"tokens": ["batch", "seq"], "token_types": ["batch", "seq"],
                                                              "lengths": ["batch"]}
    assert {o["name"]: o["shape"] for o in meta["outputs"]} == {"hidden": ["batch", "seq", 16],
                                                               "logits": ["batch", "seq", 50]}
    kernels = meta["kernels"]
    assert len(kernels) == 2 and all(k["kernel"] and k["reason"] for k in kernels.values())
    assert meta["batching"]["batch_dim"] == "batch" and meta["batching"]["padded_dims"] == ["seq"]
    assert meta["limits"]["max_batch"] == 32 and meta["generate"] is False


def test_metrics_are_prometheus_text_with_requests_errors_latency_batches_and_queue(bert_server):
    with bert_server.client() as client:
        client.post("/v1/infer", json={"inputs": GOOD})
        client.post("/v1/infer", content=b"{")
        text = client.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert {"nngraph_requests", "nngraph_errors", "nngraph_request_seconds", "nngraph_batch_rows",
            "nngraph_queue_depth", "nngraph_in_flight"} <= set(families)
    statuses = {s.labels["status"] for s in families["nngraph_requests"].samples if s.name.endswith("_total")}
    assert {"200", "400"} <= statuses
    reasons = {s.labels["reason"] for s in families["nngraph_errors"].samples if s.name.endswith("_total")}
    assert "bad_body" in reasons
    assert families["nngraph_request_seconds"].type == "histogram"
    assert next(s.value for s in families["nngraph_queue_depth"].samples) == 0


def _metric(server, name: str, suffix: str) -> float:
    with server.client() as client:
        text = client.get("/metrics").text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name + suffix)


def test_a_post_route_asked_with_another_method_gets_405_naming_post(bert_server):
    with bert_server.client() as client:
        infer, generate = client.get("/v1/infer"), client.put("/v1/generate", json={})
    for answer, path in ((infer, "/v1/infer"), (generate, "/v1/generate")):
        assert answer.status_code == 405 and answer.headers["allow"] == "POST"
        assert answer.json() == {"error": f"{path} takes POST"}


def test_a_client_that_disconnects_mid_body_is_counted_and_frees_its_slot(bert_server):
    """No answer can reach it; the error counter says why (not a 500 with a traceback), the slot is free."""
    before = _errors(bert_server, "disconnected")
    sock = socket.create_connection(("127.0.0.1", bert_server.port))
    sock.sendall(b"POST /v1/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
                 b'{"inputs":')
    bert_server.wait_for("nngraph_in_flight", 1)
    sock.close()
    bert_server.wait_for("nngraph_in_flight", 0)
    assert _errors(bert_server, "disconnected") == before + 1
    assert _errors(bert_server, "internal") == 0
    with bert_server.client() as client:
        assert client.post("/v1/infer", json={"inputs": GOOD}).status_code == 200


def _errors(server, reason: str) -> float:
    with server.client() as client:
        text = client.get("/metrics").text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "nngraph_errors_total" and s.labels["reason"] == reason)


def test_two_model_instances_answer_each_request_as_it_runs_alone(models):
    session = open_model(models["bert"])
    rng = np.random.default_rng(1)
    requests = [bert_request(rng, rows, seq) for rows, seq in zip((1, 2, 1, 3, 1, 2, 1, 1), SEQS)]
    server = ServerProcess(models["bert"], "--instances", "2", "--max-batch", "4")
    try:
        with server.client() as client:
            assert client.get("/metadata").json()["batching"]["instances"] == 2
        def call(feeds):
            with server.client() as client:
                return client.post("/v1/infer", json={"inputs": {k: v.tolist() for k, v in feeds.items()}})

        with ThreadPoolExecutor(len(requests)) as pool:
            answers = list(pool.map(call, requests))
        for feeds, answer in zip(requests, answers):
            assert answer.status_code == 200, answer.text
            for name, ref in alone(session, feeds).items():
                assert np.max(np.abs(np.asarray(answer.json()["outputs"][name], np.float32) - ref)) <= 1e-6
    finally:
        assert server.stop() == 0
