"""The batching schedule (compilers/serve/batching.py) on a stand-in model, in process: when a batch waits
for company and when it goes out at once."""

from __future__ import annotations

import asyncio
import re
import time

from nngraph.compilers.serve.batching import Batcher
from nngraph.compilers.serve.model import Request


class _Model:
    """Records each run's start time and requests; the first run takes ``first_run`` seconds, every run
    ``every_run``."""

    def __init__(self, first_run: float = 0.0, every_run: float = 0.0) -> None:
        self.runs: list[tuple[float, list[int]]] = []
        self.instances: list[int] = []
        self.first_run, self.every_run = first_run, every_run

    def key(self, request: Request) -> tuple:
        return ()

    def run(self, group: list[Request], instance: int = 0) -> list[dict]:
        self.runs.append((time.perf_counter(), [int(r.feeds["i"]) for r in group]))
        self.instances.append(instance)
        time.sleep(self.first_run if len(self.runs) == 1 else self.every_run)
        return [{"i": r.feeds["i"]} for r in group]


def _schedule(model: _Model, window: float, max_wait: float, arrivals: list[float], rows: list[int],
              instances: int = 1, refill_gap: float = 0.1) -> list[float]:
    """Submit request i of ``rows[i]`` rows at ``arrivals[i]`` seconds (max batch 8); each one's answer time
    (seconds from the start)."""

    async def main() -> list[float]:
        batcher = Batcher(model, max_batch=8, window=window, max_wait=max_wait, queue_size=16, instances=instances,
                          refill_gap=refill_gap)
        batcher.start()
        start = time.perf_counter()

        async def one(i: int, at: float) -> float:
            await asyncio.sleep(at)
            await batcher.submit(Request({"i": i}, rows[i]))
            return time.perf_counter() - start

        try:
            return list(await asyncio.gather(*(one(i, at) for i, at in enumerate(arrivals))))
        finally:
            await batcher.stop()

    return asyncio.run(main())


def test_a_request_at_an_idle_worker_waits_for_company_within_the_window():
    model = _Model()
    _schedule(model, window=0.3, max_wait=1.0, arrivals=[0.0, 0.05], rows=[1, 1])
    assert [ids for _, ids in model.runs] == [[0, 1]]


def test_requests_that_queued_during_a_run_go_out_when_it_ends_without_a_new_window():
    model = _Model(first_run=0.3)
    done = _schedule(model, window=0.2, max_wait=0.2, arrivals=[0.0, 0.25, 0.3], rows=[1, 1, 1])
    # request 0 waits 0.2 s for company, finds none and runs alone for 0.3 s (until 0.5); 1 and 2 arrive
    # during that run and start right after it (a window opened then would hold them 0.2 s more)
    assert [ids for _, ids in model.runs] == [[0], [1, 2]]
    assert model.runs[1][0] - model.runs[0][0] < 0.3 + 0.1 and done[1] < 0.5 + 0.12


def test_a_batch_short_of_the_last_ones_rows_waits_for_them_no_longer_than_a_run():
    """The refill rule: after a batch of 3 rows, the next waits for 3 (they come: one batch) -- but no
    longer than the last run took (0.2 s, under max_wait 0.5 s): request 4 comes alone and waits 0.2 s, once."""
    model = _Model(first_run=0.2, every_run=0.2)
    done = _schedule(model, window=0.0, max_wait=0.5, arrivals=[0.0, 0.3, 0.32, 0.34, 1.0, 2.0],
                     rows=[3, 1, 1, 1, 1, 1], refill_gap=1.0)
    assert [ids for _, ids in model.runs] == [[0], [1, 2, 3], [4], [5]]
    assert done[1] < 0.67  # out when request 3 made 3 rows (0.34 s), not at the end of the wait (0.5 s)
    assert 1.35 < done[4] < 1.62  # 3 rows never came: out after a run's time (1.2 s), not max_wait (1.5 s)
    assert done[5] < 2.3  # the last batch held 1 row: request 5 does not wait


def test_a_refill_ends_at_the_first_pause_longer_than_the_refill_gap():
    """Refill gap 0.05 s: requests 1 and 2 come 0.03 s apart and share a batch, which goes 0.05 s after
    request 2 (not when the last run's 0.2 s are up); request 3 comes alone and waits 0.05 s only."""
    model = _Model(first_run=0.2, every_run=0.2)
    done = _schedule(model, window=0.0, max_wait=0.5, arrivals=[0.0, 0.3, 0.33, 1.0], rows=[3, 1, 1, 1],
                     refill_gap=0.05)
    assert [ids for _, ids in model.runs] == [[0], [1, 2], [3]]
    assert 0.57 < done[1] < 0.65  # out at 0.38 s, run 0.2 s; waiting out the run's time would end at 0.7
    assert done[3] < 1.33  # out at 1.05 s; the run's time would hold it until 1.2 s


def test_with_two_instances_a_request_that_arrives_during_a_run_starts_on_the_free_one():
    model = _Model(first_run=0.3)
    done = _schedule(model, window=0.0, max_wait=0.0, arrivals=[0.0, 0.1, 0.2], rows=[8, 1, 1], instances=2)
    # request 0 fills a batch and runs on instance 0 for 0.3 s; 1 starts at once on instance 1 (free), and
    # so does 2 after it; with one instance both would wait for the 0.3 s run
    assert [ids for _, ids in model.runs] == [[0], [1], [2]] and model.instances == [0, 1, 1]
    assert done[1] < 0.2 and done[2] < 0.3 < done[0]
    one = _Model(first_run=0.3)
    alone = _schedule(one, window=0.0, max_wait=0.0, arrivals=[0.0, 0.1, 0.2], rows=[8, 1, 1])
    assert [ids for _, ids in one.runs] == [[0], [1, 2]] and min(alone[1:]) > 0.3


def test_each_answer_says_how_long_it_queued_and_how_long_its_batch_ran():
    """Request 0 runs alone for 0.3 s; 1 and 2 arrive at 0.1 and 0.15 s and wait for that run to end."""

    async def main() -> list:
        batcher = Batcher(_Model(first_run=0.3), max_batch=8, window=0.0, max_wait=0.0, queue_size=16)
        batcher.start()

        async def one(i: int, at: float):
            await asyncio.sleep(at)
            return await batcher.submit(Request({"i": i}, 1 + (i == 0) * 7))

        try:
            return list(await asyncio.gather(*(one(i, at) for i, at in enumerate([0.0, 0.1, 0.15]))))
        finally:
            await batcher.stop()

    first, second, third = asyncio.run(main())
    assert first.outputs == {"i": 0} and first.rows == 8 and first.queued < 0.05 and 0.3 <= first.run < 0.5
    assert second.rows == third.rows == 2 and second.run == third.run < 0.1
    assert 0.15 < second.queued < 0.4 and 0.1 < third.queued < second.queued  # the rest of request 0's run
    header = re.fullmatch(r'queue;dur=(\d+\.\d{3}), run;dur=(\d+\.\d{3});desc="8 rows"', first.server_timing())
    assert header and abs(float(header[1]) - 1000 * first.queued) <= 5e-4
    assert abs(float(header[2]) - 1000 * first.run) <= 5e-4
