"""Dynamic batching: requests wait in a bounded queue; one loop gathers them into batches and runs the model.

A batch opens with the first waiting request and takes every request already waiting. When that first
request found the worker idle it may also wait for company: the batch closes when it holds ``max_batch``
rows, when no further request arrived for ``window`` seconds, or ``max_wait`` seconds after that request
arrived, whichever comes first. A first request that arrived while the previous batch ran has already
waited (for that run), so its batch is what queued meanwhile and goes out the moment the run ends -- the
window never starts again on top of a run. With ``window = 0`` (the default) no request ever waits for
company (measured in bench/serve.py: a 2 ms window cost a lone client 3x its latency and gained nothing at
16 clients): a batch is what arrived while the previous one ran, and under load the batches grow by themselves.

Refill: a batch holding fewer rows than the one before it waits for that many rows while they keep coming (no
gap of :data:`REFILL_GAP` between two), at most as long as the last run took and at most ``max_wait``, counted
from when its instance became free (or its first request arrived, if later). The requests a batch answered
come back in a burst as the event loop writes their answers (closed-loop clients, or a steady load), and
without this rule the first of them would go out in a small batch of its own and split the load into a small
and a large batch taking turns, each request waiting for the other's run: measured at 16 closed-loop clients
(bench/serve.py's load generator, quiet, before the limits below), the refill made BERT-shaped (8 tokens)
5-10% faster with p99 40-49 ms instead of 55-56 ms, and gpt_char 12-14% faster. The limits keep it from taxing
independent arrivals: capped by ``max_wait`` alone it held every batch of a Poisson load open for ``max_wait``
(each waited for the rows the last had gathered by waiting) and gpt_char's p50 at half its capacity doubled;
capped by the run alone, BERT-shaped's p50 under Poisson arrivals at half its capacity still rose from 9-16 ms
to 19 ms (p99 52 ms); with the 2 ms gap it was 9.5 ms (p99 24 ms), and a 5 ms gap gave 19 ms again. A lone
client's batches hold one row and never wait.

Latency (one worker, ``R`` = one batch's compute): a request waits at most ``max(max_wait, R)`` before its
batch starts -- ``max_wait`` at an idle worker, the rest of the run in progress at a busy one -- when it fits
into the next batch; with ``C`` requests outstanding and ``max_batch`` ``B``, up to ``ceil(C / B)`` batches
queue ahead of its own. Its requests are grouped by :meth:`ServedModel.key` (each group one model run,
padded where the probes allowed) and run one group at a time on a worker thread, so the event loop keeps
accepting while the model runs -- and the requests that arrive meanwhile form the next batch.
``max_batch = 1`` runs every request alone.

With ``instances`` > 1 (``--instances``) the model has that many sessions, each run by a worker thread of
its own: a batch forms for whichever instance is free, so a request that arrives while one instance runs
starts on another at once instead of waiting for that run. On 2 cores (bench/serve.py, BERT-shaped, each
instance with one ORT thread) that cut the p99 of the wait beyond a request's own run by 20-50% in the open
loop, but each run took longer on one thread, so neither the latency nor the throughput improved; it pays
where there are cores to spare for each instance.

At most ``queue_size`` requests are admitted and unanswered at once -- queued, in the open batch or running;
one more is refused at once (:class:`QueueFull`: the server answers 503 with Retry-After). A request whose
caller gave up (timeout, disconnect) is dropped before it runs.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .model import Request, ServedModel


#: seconds without a request that end a refill (module doc): longer than the event loop takes to answer one
#: request and take in the next (0.2-1.2 ms in bench/serve.py), shorter than most gaps of a moderate load
REFILL_GAP = 0.002


class QueueFull(RuntimeError):
    """The request queue holds its maximum."""


@dataclass(frozen=True)
class Answer:
    """A request's outputs and where its time in the batcher went: ``queued`` seconds from its submission to
    the start of its batch's run, ``run`` seconds of that run, shared by the batch's ``rows`` rows."""

    outputs: dict[str, Any]
    queued: float
    run: float
    rows: int

    def server_timing(self) -> str:
        """The ``Server-Timing`` header (W3C Server Timing, ms), which lets a client tell the wait for a batch
        from the batch's compute: ``queue;dur=2.100, run;dur=19.400;desc="14 rows"``."""
        return f'queue;dur={1000 * self.queued:.3f}, run;dur={1000 * self.run:.3f};desc="{self.rows} rows"'


@dataclass
class _Item:
    request: Request
    future: asyncio.Future
    arrived: float = field(default_factory=time.perf_counter)
    timer: asyncio.TimerHandle | None = None


class Batcher:
    """The queue and the batching loop of one model (start with :meth:`start` inside the event loop)."""

    def __init__(self, model: ServedModel, max_batch: int, window: float, max_wait: float, queue_size: int,
                 metrics: Any = None, instances: int = 1, refill_gap: float = REFILL_GAP) -> None:
        self.model, self.max_batch, self.window, self.max_wait = model, max_batch, window, max_wait
        self.queue_size, self.metrics, self.instances, self.refill_gap = queue_size, metrics, instances, refill_gap
        self.queue: asyncio.Queue[_Item] | None = None
        self.pool = ThreadPoolExecutor(instances, thread_name_prefix="nngraph-batch")
        self.task: asyncio.Task | None = None
        self._carry: _Item | None = None
        # the instances not running a batch, each with the time it became free: a request that arrived before
        # that time waited for a run (module doc)
        self._free: asyncio.Queue[tuple[int, float]] | None = None
        self._running: set[asyncio.Task] = set()
        self._last_rows = 0  # the rows of the last batch: the next one waits for as many (module doc: refill)
        self._last_run = 0.0  # seconds of the last run: the longest such a wait may be
        self.pending = 0

    def depth(self) -> int:
        """Requests admitted and not yet answered."""
        return self.pending

    def start(self) -> None:
        self.queue, self._free = asyncio.Queue(), asyncio.Queue()
        for instance in range(self.instances):
            self._free.put_nowait((instance, 0.0))
        self.task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Stop the loop and the runs (after the server drained its requests) and the worker threads."""
        if self.task is not None:
            for task in (self.task, *self._running):
                task.cancel()
            await asyncio.gather(self.task, *self._running, return_exceptions=True)
        self.pool.shutdown(wait=True)

    def submit(self, request: Request, within: float | None = None) -> asyncio.Future:
        """Queue a checked request; its future gets its :class:`Answer`, or the run's error, or ``TimeoutError`` when
        ``within`` seconds pass first (the request is then dropped from its batch). QueueFull when full."""
        assert self.queue is not None, "Batcher.start() first"
        if self.pending >= self.queue_size:
            raise QueueFull(f"{self.pending} requests are waiting (the queue's limit)")
        loop = asyncio.get_running_loop()
        item = _Item(request, loop.create_future())
        if within is not None:  # one timer on the future: cheaper for the event loop than a timeout scope
            item.timer = loop.call_later(within, _expire, item.future)
        self.queue.put_nowait(item)
        self.pending += 1
        return item.future

    async def _loop(self) -> None:
        """Wait for a free instance, gather the next batch for it and start its run there; the next batch
        forms while it runs, for the next instance that is free."""
        assert self._free is not None
        while True:
            instance, free_since = await self._free.get()
            task = asyncio.get_running_loop().create_task(self._run_batch(await self._gather(free_since), instance))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run_batch(self, batch: list[_Item], instance: int) -> None:
        groups: dict[tuple, list[_Item]] = {}
        for item in batch:
            if not item.future.done():  # else the caller gave up
                groups.setdefault(self.model.key(item.request), []).append(item)
        try:
            for group in groups.values():
                await self._run(group, instance)
        finally:
            self.pending -= len(batch)
            self._free.put_nowait((instance, time.perf_counter()))  # type: ignore[union-attr]

    async def _gather(self, free_since: float) -> list[_Item]:
        """The next batch for an instance free since ``free_since`` (module doc): blocks for the first request,
        takes what is waiting and, when that request found the instance free, waits for more within the
        window; short of the last batch's rows it waits for those (refill). A request that would overfill the
        batch is carried over to open the next one."""
        assert self.queue is not None
        first, self._carry = self._carry or await self.queue.get(), None
        batch, rows = [first], first.request.rows
        # the window is for a request that found the worker idle; one that waited for a run goes out now
        closes = first.arrived + self.max_wait if first.arrived >= free_since else 0.0
        refill = max(first.arrived, free_since) + min(self.max_wait, self._last_run)  # (module doc: refill)
        while rows < self.max_batch:
            if rows < self._last_rows:
                left = min(self.refill_gap, refill - time.perf_counter())
            else:
                left = min(self.window, closes - time.perf_counter())
            if self.queue.empty() and left <= 0:
                break
            try:
                item = (self.queue.get_nowait() if not self.queue.empty()
                        else await asyncio.wait_for(self.queue.get(), left))
            except asyncio.TimeoutError:
                break
            if rows + item.request.rows > self.max_batch:
                self._carry = item
                break
            batch.append(item)
            rows += item.request.rows
        self._last_rows = rows
        return batch

    async def _run(self, group: list[_Item], instance: int) -> None:
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        try:
            results = await loop.run_in_executor(self.pool, self.model.run, [i.request for i in group], instance)
        except Exception as exc:  # noqa: BLE001 - the run's error goes to each caller
            for item in group:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        finally:
            for item in group:  # answered (or failed) now: the answer timeout has nothing left to cut short
                if item.timer is not None:
                    item.timer.cancel()
        run, rows = time.perf_counter() - start, sum(i.request.rows for i in group)
        self._last_run = run
        if self.metrics is not None:
            self.metrics.batch_rows.observe(rows)
            self.metrics.batch_requests.observe(len(group))
            self.metrics.batch_seconds.observe(run)
        for item, result in zip(group, results):
            if not item.future.done():
                item.future.set_result(Answer(result, start - item.arrived, run, rows))


def _expire(future: asyncio.Future) -> None:
    if not future.done():
        future.set_exception(TimeoutError())
