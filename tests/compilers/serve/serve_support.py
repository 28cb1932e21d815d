"""Helpers of the serve tests: a real ``nngraph serve`` process on 127.0.0.1 and a free port, and its client.

A plain module (not conftest) so tests import it by a unique name.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[3]
SPECS = ROOT / "specs"
#: the small sizes the zoo specs name in their ``# small-sizes:`` comments
BERT = ["vocab=50", "d_model=16", "heads=2", "ffn=32", "layers=2", "max_len=16"]
GPT = ["vocab=20", "d_model=16", "heads=2", "layers=1", "ctx=16"]


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``nngraph serve MODEL --port P FLAGS...`` as a child process; :meth:`wait_ready` polls ``/health``."""

    def __init__(self, model: Path, *flags: str, port: int | None = None, threads: int | None = 1) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "ORT_DISABLE_TELEMETRY": "1"}
        self.log = tempfile.TemporaryFile()  # not a pipe: nobody reads it while the server runs
        more = ["--threads", str(threads)] if threads else []  # tests: one ORT thread (CI runs two workers)
        self.proc = subprocess.Popen([sys.executable, "-m", "nngraph", "serve", str(model), "--port", str(self.port),
                                      *more, *flags], stdout=subprocess.DEVNULL, stderr=self.log,
                                     env=env, cwd=ROOT)
        self.wait_ready()

    def wait_ready(self, seconds: float = 60.0) -> None:
        ends = time.monotonic() + seconds
        while time.monotonic() < ends:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"the server exited {self.proc.returncode}: {self.log.read()[-3000:].decode()}")
            try:
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("the server did not answer /health within 60 s")

    def gauge(self, name: str) -> float:
        """The value of a gauge of the server's /metrics (``nngraph_queue_depth``, ``nngraph_in_flight``)."""
        from prometheus_client.parser import text_string_to_metric_families

        text = httpx.get(self.url + "/metrics", timeout=10.0).text
        return next(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)

    def wait_for(self, name: str, value: float, seconds: float = 20.0) -> None:
        """Poll the gauge ``name`` until it reads ``value`` (a loaded machine may take a while to accept)."""
        ends = time.monotonic() + seconds
        while self.gauge(name) != value:
            if time.monotonic() > ends:
                raise AssertionError(f"{name} never reached {value} (now {self.gauge(name)})")
            time.sleep(0.02)

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kwargs.pop("timeout", 30.0), **kwargs)

    def stop(self) -> int:
        """SIGTERM, then the exit code (SIGKILL after 30 s)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def export_small(name: str, overrides: list[str], out: Path, **options) -> Path:
    """The zoo spec ``name`` at small sizes exported to ``out`` (no torch comparison: the ONNX tests do that)."""
    from nngraph.compilers.onnx.export import export_spec

    export_spec(SPECS / f"{name}.yaml", out, overrides, verify=False, **options)
    return out
