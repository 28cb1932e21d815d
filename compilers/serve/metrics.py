"""The server's Prometheus metrics (``GET /metrics``, text exposition format), one registry per app.

``nngraph_requests_total{endpoint, status}``, ``nngraph_errors_total{endpoint, reason}``,
``nngraph_request_seconds{endpoint}`` (latency histogram, receipt to answer), ``nngraph_batch_rows``
(rows per model run: the dynamic batches' sizes), ``nngraph_batch_requests`` (requests per model run),
``nngraph_batch_seconds`` (time per model run),
``nngraph_queue_depth`` (requests admitted and not yet answered), ``nngraph_in_flight`` (requests being handled).
"""

from __future__ import annotations

from typing import Any, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """The metric objects of one server."""

    def __init__(self, max_batch: int, queue_depth: Callable[[], int], in_flight: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("nngraph_requests", "HTTP requests answered", ["endpoint", "status"], registry=r)
        self.errors = Counter("nngraph_errors", "requests answered with an error", ["endpoint", "reason"], registry=r)
        self.latency = Histogram("nngraph_request_seconds", "request latency, receipt to answer", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        sizes = sorted({2 ** i for i in range(max_batch.bit_length() + 1)} | {max_batch})
        self.batch_rows = Histogram("nngraph_batch_rows", "rows per model run (dynamic batch size)",
                                    buckets=sizes, registry=r)
        self.batch_requests = Histogram("nngraph_batch_requests", "requests per model run", buckets=sizes, registry=r)
        self.batch_seconds = Histogram("nngraph_batch_seconds", "seconds per model run (stacking and cutting "
                                       "included)", buckets=LATENCY_BUCKETS, registry=r)
        Gauge("nngraph_queue_depth", "requests admitted and not yet answered", registry=r).set_function(queue_depth)
        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}
        Gauge("nngraph_in_flight", "requests being handled", registry=r).set_function(in_flight)

    def answered(self, endpoint: str, status: int, seconds: float, reason: str | None = None) -> None:
        """Count one answer (and its error reason, if any) and its latency."""
        key = (endpoint, status)
        children = self._children.get(key)
        if children is None:  # labels() takes a lock and builds a key per call: done once per endpoint and status
            children = self._children[key] = (self.requests.labels(endpoint, str(status)), self.latency.labels(endpoint))
        children[0].inc()
        children[1].observe(seconds)
        if reason is not None:
            self.errors.labels(endpoint, reason).inc()

    def exposition(self) -> tuple[bytes, str]:
        """(body, content type) of ``GET /metrics``."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
