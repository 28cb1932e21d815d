"""The load generator of bench/serve.py: a minimal asyncio HTTP/1.1 client over keep-alive connections, its
request encoded once (the generator's own CPU per request stays small beside the server's), in a closed loop
(each connection sends its next request when the last is answered) or an open one (requests at given times)."""

from __future__ import annotations

import asyncio
import re
import time

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


def _record(head: bytes, start: float, latencies: list[float], failures: list[int],
            served: list[tuple[float, float]]) -> None:
    """An answer's latency (200) or status (else); for a 200, (queued, run) seconds from its Server-Timing."""
    if head.startswith(b"HTTP/1.1 200"):
        latencies.append(time.perf_counter() - start)
        timing = _TIMING.search(head)
        served.append((float(timing[1]) / 1000, float(timing[2]) / 1000) if timing else (float("nan"),) * 2)
    else:
        failures.append(int(head[9:12]))


async def _client(port: int, request: bytes, ends: float, latencies: list[float], failures: list[int],
                  served: list[tuple[float, float]]) -> None:
    """Requests back to back on one keep-alive connection until ``ends``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < ends:
            start = time.perf_counter()
            _record(await _exchange(reader, writer, request), start, latencies, failures, served)
    finally:
        writer.close()


def _request(body: bytes) -> bytes:
    return (f"POST /v1/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-npz\r\n"
            f"Accept: application/x-npz\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


Load = tuple[list[float], list[int], float, list[tuple[float, float]]]


async def closed_load(port: int, body: bytes, clients: int, seconds: float) -> Load:
    """Closed loop: ``clients`` connections, each sending its next request when the last one is answered.
    (latencies, failures' statuses, wall seconds, each answer's (queued, run) seconds from the server)."""
    request = _request(body)
    latencies: list[float] = []
    failures: list[int] = []
    served: list[tuple[float, float]] = []
    start = time.perf_counter()
    await asyncio.gather(*(_client(port, request, start + seconds, latencies, failures, served)
                           for _ in range(clients)))
    return latencies, failures, time.perf_counter() - start, served


def arrivals(rate: float, seconds: float, seed: int) -> np.ndarray:
    """Poisson arrival times (s from the start) at ``rate`` per second over ``seconds``, seeded."""
    times = np.cumsum(np.random.default_rng(seed).exponential(1 / rate, int(rate * seconds * 2) + 16))
    return times[times < seconds]


async def open_load(port: int, body: bytes, due: np.ndarray, connections: int = 64) -> Load:
    """Open loop: a request at each time in ``due``, whether or not the earlier ones were answered, on an idle
    keep-alive connection (at most ``connections``; past that it waits for one). Its latency counts from its
    due time, so a server that falls behind is charged for every request's wait (no coordinated omission)."""
    request = _request(body)
    latencies: list[float] = []
    failures: list[int] = []
    served: list[tuple[float, float]] = []
    idle: asyncio.Queue = asyncio.Queue()
    pool: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def send(at: float) -> None:
        if idle.empty() and len(pool) < connections:
            slot = len(pool)
            pool.append(None)  # type: ignore[arg-type] - the slot is taken before the connect yields
            conn = pool[slot] = await asyncio.open_connection("127.0.0.1", port)
        else:
            conn = await idle.get()
        _record(await _exchange(*conn, request), at, latencies, failures, served)
        idle.put_nowait(conn)

    start = time.perf_counter()
    sent = []
    for offset in due:
        delay = start + offset - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sent.append(asyncio.create_task(send(start + offset)))
    await asyncio.gather(*sent)
    wall = time.perf_counter() - start
    for _, writer in pool:  # every slot is connected: each send awaited its connect
        writer.close()
    return latencies, failures, wall, served
