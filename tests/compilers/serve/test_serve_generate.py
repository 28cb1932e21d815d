"""`POST /v1/generate` on a real server: the tokens (and text) streamed as server-sent events, and the whole
answer, equal `nngraph.compilers.onnx.generate` run in this process on the same file with the same options."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nngraph.compilers.onnx.generate import generate
from nngraph.compilers.sampling import GenerationOptions
from nngraph.compilers.tokenizer import TextTokenizer, char_json

from serve_support import ServerProcess

CHARS = "abcdefghijklmnopqrs "  # gpt_char's 20 ids at the tests' small sizes


#: a small decoder with the inputs that let rows of different lengths share a batch (left-padded)
PADDED = """
nngraph: 1
name: gpt_padded
inputs:
  tokens: {shape: [batch, seq], dtype: int64}
  key_padding: {shape: [batch, seq], dtype: bool}
  positions: {shape: [batch, seq], dtype: int64}
graph:
  - {name: wte, op: embedding, in: tokens, num: 20, dim: 16}
  - {name: wpe, op: position_embedding, in: {x: wte, positions: positions}, type: learned, max_len: 32}
  - {name: attn, op: attention, in: {x: wpe, key_padding: key_padding}, heads: 2, mask: {all: [causal, key_padding]}}
  - {name: head, op: linear, in: attn, out: 20}
outputs: {logits: head}
"""


@pytest.fixture(scope="module")
def padded(tmp_path_factory):
    """The padded decoder exported with a KV cache."""
    from nngraph.compilers.onnx.export import export_spec

    folder = tmp_path_factory.mktemp("padded")
    (folder / "gpt_padded.yaml").write_text(PADDED)
    export_spec(folder / "gpt_padded.yaml", folder / "gpt_padded.onnx", kv_cache=True, verify=False)
    return folder / "gpt_padded.onnx"


@pytest.fixture(scope="module")
def decoder(padded, tmp_path_factory):
    tokenizer = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tokenizer.write_text(char_json(CHARS))
    server = ServerProcess(padded, "--max-new-tokens", "12", "--tokenizer", str(tokenizer))
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


OPTIONS = {"greedy": ({}, GenerationOptions(max_new_tokens=10)),
           "sampled": ({"top_k": 5, "top_p": 0.9, "temperature": 0.8, "repetition_penalty": 1.3, "seed": 3},
                       GenerationOptions(max_new_tokens=10, do_sample=True, top_k=5, top_p=0.9, temperature=0.8,
                                         repetition_penalty=1.3, seed=3)),
           "stop": ({"eos": [7, 11]}, GenerationOptions(max_new_tokens=10, stop_tokens=(7, 11)))}


@pytest.mark.parametrize("name", OPTIONS)
@pytest.mark.parametrize("prompt", [[[1, 2, 3], [4, 5, 6]], [[1, 2, 3], [4, 5], [6]]], ids=["equal", "ragged"])
def test_streamed_tokens_equal_generate_in_process(decoder, padded, name, prompt):
    body, options = OPTIONS[name]
    want = generate(padded, prompt, options)  # rows of different lengths: left-padded, as the decoder runs them
    with decoder.client() as client:
        with client.stream("POST", "/v1/generate", json={"ids": prompt, "max_new_tokens": 10, "stream": True,
                                                        **body}) as answer:
            assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
            events = _events(answer.iter_lines())
        whole = client.post("/v1/generate", json={"ids": prompt, "max_new_tokens": 10, **body}).json()
    tokens = [data for kind, data in events if kind == "token"]
    assert [t["step"] for t in tokens] == list(range(want.shape[1] - 3))  # 3: the longest row
    np.testing.assert_array_equal(np.array([t["ids"] for t in tokens]).T, want[:, 3:])
    assert events[-1][0] == "done" and events[-1][1]["tokens"] == want.tolist()
    assert whole["tokens"] == want.tolist() and whole["prompt_length"] == 3


def test_text_prompts_stream_text_pieces_with_the_models_tokenizer(decoder, padded):
    tok = TextTokenizer(char_json(CHARS))
    want = generate(padded, np.array([tok.encode("bad cafe")]), GenerationOptions(max_new_tokens=8))
    with decoder.client() as client:
        with client.stream("POST", "/v1/generate", json={"text": "bad cafe", "max_new_tokens": 8,
                                                        "stream": True}) as answer:
            events = _events(answer.iter_lines())
    pieces = "".join(d["text"][0] for kind, d in events if kind == "token")
    assert pieces == tok.decode(want[0, 8:].tolist())
    assert events[-1][1]["text"] == [tok.decode(want[0].tolist())] and events[-1][1]["tokens"] == want.tolist()


@pytest.mark.parametrize("body,message", [
    ({"ids": [[1, 2, 99]]}, "token id 99 at row 0, position 2 is outside 0..19"),
    ({"ids": [[1, 2], []]}, '"ids" must be token ids'),
    ({"ids": [[1, 2]], "max_new_tokens": 13}, "'max_new_tokens' is 13; this server gives at most 12"),
    ({"ids": [[1, 2]], "temperature": -1}, "temperature must be a finite number >= 0"),
    ({"ids": [[1, 2]], "top_k": "5"}, "'top_k' must be int"),
    ({"text": ["ab", ""]}, "text prompt '' encodes to no tokens"),
    ({"text": "xyz"}, "'x'"),
], ids=["vocab", "empty-row", "too-many", "temperature", "type", "empty-text", "unknown-char"])
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
        text = client.post("/v1/generate", json={"text": "hello"})
        ragged = client.post("/v1/generate", json={"ids": [[1, 2, 3], [4]]})
    assert server.stop() == 0
    assert meta["spec"] == "gpt_char" and meta["generate"] is True and meta["kv_cache"] is False
    # the same spec, sizes and seed as the files exported in this process: the same weights
    from nngraph.compilers.onnx.runner import open_model

    want = open_model(models["gpt"]).run(None, {"tokens": prompt})[0]
    assert np.max(np.abs(np.asarray(logits) - want)) <= 1e-6
    assert tokens == generate(models["gpt_kv"], prompt, 6).tolist()
    assert text.status_code == 422 and "this model has no tokenizer" in text.json()["error"]
    assert ragged.status_code == 422 and "no key_padding input" in ragged.json()["error"]
