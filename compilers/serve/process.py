"""``nngraph serve`` in a child process on 127.0.0.1: start it, wait until ``/health`` answers, read its
gauges, stop it with SIGTERM. The serve tests and bench/serve.py drive real servers through this one class.

Readiness and gauges go through the standard library's HTTP client, so the module needs only the ``serve``
extra; :meth:`ServerProcess.client` returns an ``httpx.Client`` (httpx is in the ``dev`` extra) for callers
that send many requests.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ..ports import free_port


class ServerProcess:
    """``nngraph serve MODEL --port P [--threads T] FLAGS...`` as a child process, ready when constructed.

    ``threads``: ONNX Runtime's intra-op threads (None: its default, as a user starts it). The server's
    stderr goes to a temporary file (not a pipe nobody reads, which would block it once full); a server
    that exits before it is ready raises with that log's tail.
    """

    def __init__(self, model: Path, *flags: str, port: int | None = None, threads: int | None = 1,
                 cwd: Path | None = None, ready_seconds: float = 120.0) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile()
        more = ["--threads", str(threads)] if threads else []
        command = [sys.executable, "-m", "nngraph", "serve", str(model), "--port", str(self.port), *more, *flags]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=self.log, cwd=cwd,
                                     env={**os.environ, "ORT_DISABLE_TELEMETRY": "1"})
        self.wait_ready(ready_seconds)

    def _get(self, path: str, timeout: float) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, ""

    def wait_ready(self, seconds: float = 120.0) -> None:
        """Poll ``/health`` until it answers 200; raise with the server's log if it exits first."""
        ends = time.monotonic() + seconds
        while time.monotonic() < ends:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited {self.proc.returncode}: {self.log_tail()}")
            try:
                if self._get("/health", 1.0)[0] == 200:
                    return
            except OSError:  # not listening yet
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the server did not answer /health within {seconds:g} s: {self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        """The end of what the server wrote to stderr so far."""
        self.log.seek(0)
        return self.log.read()[-chars:].decode(errors="replace")

    def metrics(self) -> str:
        """The server's ``/metrics`` page (Prometheus text format)."""
        return self._get("/metrics", 10.0)[1]

    def gauge(self, name: str) -> float:
        """The value of one sample of ``/metrics`` (``nngraph_queue_depth``, ``nngraph_in_flight``)."""
        from prometheus_client.parser import text_string_to_metric_families

        return next(s.value for f in text_string_to_metric_families(self.metrics()) for s in f.samples
                    if s.name == name)

    def wait_for(self, name: str, value: float, seconds: float = 20.0) -> None:
        """Poll the gauge ``name`` until it reads ``value`` (a loaded machine may take a while to accept)."""
        ends = time.monotonic() + seconds
        while self.gauge(name) != value:
            if time.monotonic() > ends:
                raise AssertionError(f"{name} never reached {value} (now {self.gauge(name)})")
            time.sleep(0.02)

    def client(self, **kwargs: Any):
        """An ``httpx.Client`` on this server (30 s timeout unless given)."""
        import httpx

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
