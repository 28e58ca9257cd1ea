"""The consumer's Prometheus metrics, served on a loopback ``/metrics`` port.

Created on first use, never at import (one set per process). Records in = scored +
dead-lettered once every batch in hand is finished; ``inflight`` is the difference meanwhile.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from tasks.lazy import once

BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
THROUGHPUT_WINDOW_SECONDS = 10.0


@dataclass(frozen=True)
class StreamMetrics:
    records_in: Any  # Counter
    scored: Any  # Counter{model_tag}
    dead_lettered: Any  # Counter
    errors: Any  # Counter{stage}
    batch_size: Any  # Histogram
    lag: Any  # Histogram: seconds from the producer's send to the acknowledgement
    inflight: Any  # Gauge: received, not yet acknowledged
    throughput: Any  # Gauge: records finished per second over the last window


@once
def stream_metrics() -> StreamMetrics:
    from prometheus_client import Counter, Gauge, Histogram

    p = "driftloop_stream_"
    return StreamMetrics(
        records_in=Counter(f"{p}records_in", "Records received from the input."),
        scored=Counter(f"{p}scored", "Records scored and published.", ["model_tag"]),
        dead_lettered=Counter(f"{p}dead_lettered", "Records sent to the dead letter."),
        errors=Counter(f"{p}errors", "Batches that failed and were retried.", ["stage"]),
        batch_size=Histogram(f"{p}batch_size", "Records per batch.", buckets=BATCH_BUCKETS),
        lag=Histogram(f"{p}lag_seconds", "Producer send to acknowledgement.", buckets=LAG_BUCKETS),
        inflight=Gauge(f"{p}inflight", "Records received, not yet acknowledged."),
        throughput=Gauge(f"{p}throughput", "Records finished per second (last 10 s)."),
    )


class Throughput:
    """Records finished per second over a sliding window."""

    def __init__(self, window: float = THROUGHPUT_WINDOW_SECONDS) -> None:
        self.window = window
        self._events: deque[tuple[float, int]] = deque()

    def add(self, n: int, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        self._events.append((now, n))
        while self._events and self._events[0][0] < now - self.window:
            self._events.popleft()
        return sum(k for _, k in self._events) / self.window


def serve_metrics(port: int) -> None:
    """``/metrics`` on 127.0.0.1:``port`` (every metric of this process), in a daemon thread."""
    from prometheus_client import start_http_server

    start_http_server(port, addr="127.0.0.1")
