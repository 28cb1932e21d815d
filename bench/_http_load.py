"""The load generator of bench/serve.py: a minimal asyncio HTTP/1.1 client over keep-alive connections, its
request encoded once (the generator's own CPU per request stays small beside the server's), in a closed loop
(each connection sends its next request when the last is answered) or an open one (requests at given times)."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field

import numpy as np


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bytes:
    """One request on a keep-alive connection; the answer's head (its body read and dropped)."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    await reader.readexactly(length)
    return head


#: the server's ``Server-Timing`` header: the request's wait for its batch's run and that run, in ms
_TIMING = re.compile(rb"server-timing: queue;dur=([\d.]+), run;dur=([\d.]+)", re.IGNORECASE)


async def _client(port: int, request: bytes, ends: float, load: Load) -> None:
    """Requests back to back on one keep-alive connection until ``ends``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < ends:
            start = time.perf_counter()
            load.record(await _exchange(reader, writer, request), start)
    finally:
        writer.close()


def _request(body: bytes) -> bytes:
    return (f"POST /v1/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-npz\r\n"
            f"Accept: application/x-npz\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


@dataclass
class Load:
    """What one load measured: each answered request's latency (s) and the server's (queued, run) seconds for
    it (Server-Timing), the statuses of the refused ones, the wall time, and in the open loop how late the
    load generator itself sent each request (s after its due time: this process's own delay on a busy
    machine, which its latency includes)."""

    latencies: list[float] = field(default_factory=list)
    served: list[tuple[float, float]] = field(default_factory=list)
    failures: list[int] = field(default_factory=list)
    wall: float = 0.0
    late: list[float] = field(default_factory=list)

    def record(self, head: bytes, start: float) -> None:
        """An answer's latency (200) or status (else); for a 200, (queued, run) seconds from its Server-Timing."""
        if head.startswith(b"HTTP/1.1 200"):
            self.latencies.append(time.perf_counter() - start)
            timing = _TIMING.search(head)
            self.served.append((float(timing[1]) / 1000, float(timing[2]) / 1000) if timing else (float("nan"),) * 2)
        else:
            self.failures.append(int(head[9:12]))


async def closed_load(port: int, body: bytes, clients: int, seconds: float) -> Load:
    """Closed loop: ``clients`` connections, each sending its next request when the last one is answered."""
    request, load = _request(body), Load()
    start = time.perf_counter()
    await asyncio.gather(*(_client(port, request, start + seconds, load) for _ in range(clients)))
    load.wall = time.perf_counter() - start
    return load


def arrivals(rate: float, seconds: float, seed: int) -> np.ndarray:
    """Poisson arrival times (s from the start) at ``rate`` per second over ``seconds``, seeded."""
    times = np.cumsum(np.random.default_rng(seed).exponential(1 / rate, int(rate * seconds * 2) + 16))
    return times[times < seconds]


async def open_load(port: int, body: bytes, due: np.ndarray, connections: int = 64) -> Load:
    """Open loop: a request at each time in ``due``, whether or not the earlier ones were answered, on an idle
    keep-alive connection of ``connections`` opened before the clock starts (past that many outstanding it
    waits for one). Its latency counts from its due time, so a server that falls behind is charged for every
    request's wait (no coordinated omission)."""
    request, load = _request(body), Load()
    idle: asyncio.Queue = asyncio.Queue()
    pool = [await asyncio.open_connection("127.0.0.1", port) for _ in range(connections)]
    for conn in pool:
        idle.put_nowait(conn)

    async def send(at: float) -> None:
        load.late.append(time.perf_counter() - at)
        conn = await idle.get()
        load.record(await _exchange(*conn, request), at)
        idle.put_nowait(conn)

    start = time.perf_counter()
    sent = []
    for offset in due:
        delay = start + offset - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sent.append(asyncio.create_task(send(start + offset)))
    await asyncio.gather(*sent)
    load.wall = time.perf_counter() - start
    for _, writer in pool:
        writer.close()
    return load
