"""`nngraph serve`'s limits and life cycle, on real processes: a full queue and too many requests get 503 with
Retry-After, oversized bodies 413, slow clients 408 (and hold no slot for longer), SIGTERM drains the requests
in flight and exits 0, a server killed during requests comes back clean on the same port, and the CLI says
which extra to install when the server's packages are missing."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from nngraph.compilers.onnx.runner import open_model

from serve_support import ROOT, ServerProcess

ONE = {"inputs": {"tokens": [[1, 2, 3]], "token_types": [[0, 0, 1]], "lengths": [3]}}


@pytest.fixture(scope="module")
def tight(models):
    """A BERT server with small limits and a long batch window (a request waits up to 1.2 s for company)."""
    server = ServerProcess(models["bert"], "--queue-size", "2", "--max-concurrency", "4", "--max-body", "0.02",
                           "--read-timeout", "1", "--batch-window", "1200", "--max-wait", "1200", "--max-batch", "64")
    yield server
    assert server.stop() == 0


def test_a_full_queue_answers_503_with_retry_after(tight):
    barrier = threading.Barrier(4)  # 4 clients: never over --max-concurrency 4, so every refusal is the queue's

    def call(_):
        with tight.client() as client:
            barrier.wait()
            return client.post("/v1/infer", json=ONE)

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(call, range(4)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200, 200, 503, 503]  # two admitted (they wait in the open batch), two refused at once
    refused = [a for a in answers if a.status_code == 503]
    assert all(a.headers["retry-after"] == "1" and "queue" in a.json()["error"] for a in refused)


def test_an_oversized_body_gets_413_declared_or_streamed(tight):
    big = json.dumps({"inputs": {"tokens": [[1] * 10_000]}}).encode()
    assert len(big) > 20_000
    with tight.client() as client:
        declared = client.post("/v1/infer", content=big, headers={"Content-Type": "application/json"})
        streamed = client.post("/v1/infer", content=iter([big[:10_000], big[10_000:]]),
                               headers={"Content-Type": "application/json"})
    assert declared.status_code == 413 and "the limit is 20,000" in declared.json()["error"]  # from Content-Length
    assert streamed.status_code == 413 and "exceeds the limit of 20,000 bytes" in streamed.json()["error"]  # chunked


def _slow_client(port: int) -> socket.socket:
    """A client that declares 100 bytes of body and sends 10."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"POST /v1/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
                 b'{"inputs":')
    return sock


def _answer(sock: socket.socket) -> str:
    """The raw HTTP answer on ``sock`` (read until its JSON body is complete)."""
    sock.settimeout(5)
    data = b""
    while not data.endswith(b"}"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    sock.close()
    return data.decode()


def test_slow_clients_get_408_and_while_they_stall_more_requests_get_503(tight):
    slow = [_slow_client(tight.port) for _ in range(4)]  # --max-concurrency 4: every slot held
    tight.wait_for("nngraph_in_flight", 4)
    with tight.client() as client:
        refused = client.post("/v1/infer", json=ONE)
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    for sock in slow:
        head = _answer(sock)
        assert head.startswith("HTTP/1.1 408") and "did not arrive within 1 s" in head
    with tight.client() as client:  # the slots are free again
        assert client.post("/v1/infer", json=ONE).status_code == 200


def test_sigterm_drains_requests_in_flight_then_exits_0(models):
    server = ServerProcess(models["bert"], "--batch-window", "1000", "--max-wait", "1000")
    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(lambda: server.client().post("/v1/infer", json=ONE)) for _ in range(3)]
        server.wait_for("nngraph_queue_depth", 3)  # the three wait in the open batch
        server.proc.send_signal(signal.SIGTERM)
        answers = [f.result() for f in futures]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert server.proc.wait(30) == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "/health")


def test_a_server_killed_during_requests_comes_back_clean_on_the_same_port(models):
    server = ServerProcess(models["gpt"])
    stop = threading.Event()
    outcomes = []

    def hammer():
        with server.client(timeout=5.0) as client:
            while not stop.is_set():
                try:
                    outcomes.append(client.post("/v1/infer", json={"inputs": {"tokens": [[1, 2, 3, 4]]}}).status_code)
                except httpx.TransportError:
                    outcomes.append("dropped")
                    time.sleep(0.02)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    server.proc.send_signal(signal.SIGKILL)
    assert server.proc.wait(10) == -signal.SIGKILL
    again = ServerProcess(models["gpt"], port=server.port)
    time.sleep(0.2)
    stop.set()
    for t in threads:
        t.join()
    assert 200 in outcomes and "dropped" in outcomes and set(outcomes) <= {200, "dropped"}
    tokens = np.array([[1, 2, 3, 4]])
    with again.client() as client:
        got = np.asarray(client.post("/v1/infer", json={"inputs": {"tokens": tokens.tolist()}}).json()["outputs"]["logits"])
    want = open_model(models["gpt"]).run(None, {"tokens": tokens})[0]
    assert np.max(np.abs(got - want)) <= 1e-6
    assert again.stop() == 0


def test_without_the_serve_extra_the_cli_imports_and_serve_says_what_to_install(models):
    code = ("import sys\n"
            "for m in ('starlette', 'uvicorn', 'prometheus_client'): sys.modules[m] = None\n"
            "import nngraph.cli\n"
            f"sys.argv = ['nngraph', 'serve', {str(models['gpt'])!r}]\n"
            "nngraph.cli.main()\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                         env={**os.environ, "ORT_DISABLE_TELEMETRY": "1"})
    assert out.returncode == 1
    assert "pip install 'nngraph[serve]'" in out.stderr and "Traceback" not in out.stderr
