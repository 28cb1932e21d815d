"""`POST /v1/generate` on a real server: the tokens streamed as server-sent events, and the whole answer, equal
`nngraph.compilers.onnx.generate` run in this process on the same file with the same options."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nngraph.compilers.onnx.generate import generate

from serve_support import ServerProcess


@pytest.fixture(scope="module")
def decoder(models):
    server = ServerProcess(models["gpt_kv"], "--max-new-tokens", "12")
    yield server
    assert server.stop() == 0


def _events(lines) -> list[tuple[str, dict]]:
    """(event, data) pairs of a server-sent-events stream."""
    out, name = [], None
    for line in lines:
        if line.startswith("event: "):
            name = line[len("event: "):]
        elif line.startswith("data: "):
            out.append((name, json.loads(line[len("data: "):])))
    return out


@pytest.mark.parametrize("options", [{}, {"top_k": 5, "temperature": 0.8, "seed": 3}], ids=["greedy", "top-k"])
def test_streamed_tokens_equal_generate_in_process(decoder, models, options):
    prompt = [[1, 2, 3], [4, 5, 6]]
    want = generate(models["gpt_kv"], np.array(prompt), 10, **options)
    with decoder.client() as client:
        with client.stream("POST", "/v1/generate", json={"ids": prompt, "max_new_tokens": 10, "stream": True,
                                                        **options}) as answer:
            assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
            events = _events(answer.iter_lines())
        whole = client.post("/v1/generate", json={"ids": prompt, "max_new_tokens": 10, **options}).json()
    tokens = [data for name, data in events if name == "token"]
    assert [t["step"] for t in tokens] == list(range(10))
    np.testing.assert_array_equal(np.array([t["ids"] for t in tokens]).T, want[:, 3:])
    assert events[-1][0] == "done" and events[-1][1]["tokens"] == want.tolist()
    assert whole == {"tokens": want.tolist(), "prompt_length": 3}


@pytest.mark.parametrize("body,message", [
    ({"ids": [[1, 2, 99]]}, "token id 99 at row 0, position 2 is outside 0..19"),
    ({"ids": [[1, 2], [3]]}, '"ids" must be token ids'),
    ({"ids": [[1, 2]], "max_new_tokens": 13}, "'max_new_tokens' must be an integer in 1..12"),
    ({"ids": [[1, 2]], "temperature": -1}, "'temperature' must be a finite number >= 0"),
    ({"text": "hello"}, "this model carries no tokenizer"),
], ids=["vocab", "ragged", "too-many", "temperature", "text"])
def test_bad_generate_requests_get_422_before_any_event(decoder, body, message):
    with decoder.client() as client:
        answer = client.post("/v1/generate", json={**body, "stream": True})
    assert answer.status_code == 422 and message in answer.json()["error"]


def test_a_spec_is_exported_at_start_and_served_for_infer_and_generate(models):
    from serve_support import GPT, SPECS

    server = ServerProcess(SPECS / "gpt_char.yaml", "--generate", *(a for o in GPT for a in ("--set", o)))
    prompt = np.array([[3, 1, 4, 1]])
    with server.client() as client:
        meta = client.get("/metadata").json()
        logits = client.post("/v1/infer", json={"inputs": {"tokens": prompt.tolist()}}).json()["outputs"]["logits"]
        tokens = client.post("/v1/generate", json={"ids": prompt.tolist(), "max_new_tokens": 6}).json()["tokens"]
    assert server.stop() == 0
    assert meta["spec"] == "gpt_char" and meta["generate"] is True and meta["kv_cache"] is False
    # the same spec, sizes and seed as the files exported in this process: the same weights
    from nngraph.compilers.onnx.runner import open_model

    want = open_model(models["gpt"]).run(None, {"tokens": prompt})[0]
    assert np.max(np.abs(np.asarray(logits) - want)) <= 1e-6
    assert tokens == generate(models["gpt_kv"], prompt, 6).tolist()
