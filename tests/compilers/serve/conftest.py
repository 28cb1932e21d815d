"""Fixtures of the serve tests: the small zoo models exported once per session, and the servers over them."""

from __future__ import annotations

import pytest

from serve_support import BERT, GPT, ServerProcess, export_small


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """{"bert": BERT-shaped encoder, "gpt": gpt_char, "gpt_kv": gpt_char with a KV cache}: small ONNX files."""
    folder = tmp_path_factory.mktemp("serve_models")
    return {"bert": export_small("bert_encoder", BERT, folder / "bert.onnx"),
            "gpt": export_small("gpt_char", GPT, folder / "gpt.onnx"),
            "gpt_kv": export_small("gpt_char", GPT, folder / "gpt_kv.onnx", kv_cache=True)}


@pytest.fixture(scope="module")
def bert_server(models):
    """BERT with a wide batch window (50 ms, at most 100 ms): concurrent requests share batches."""
    server = ServerProcess(models["bert"], "--batch-window", "50", "--max-wait", "100", "--max-batch", "32",
                           "--max-body", "1")
    yield server
    assert server.stop() == 0
