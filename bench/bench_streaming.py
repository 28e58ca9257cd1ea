"""Streaming benchmark: ``driftloop stream`` on Redis Streams beside the HTTP ``/predict_batch``.

One run, same model and rows as ``bench_serving`` (its ``prepare``):

- records/s through the stream at micro-batch sizes 1, 100 and 1,000: a backlog of records
  waits in the input stream, the consumer (one process pinned to one core: an asyncio loop
  and one scoring thread, LightGBM ``num_threads=1``) drains it; time from its start to the
  last record scored, published and acknowledged (the log fsynced per batch, as in production);
- ``/predict_batch`` rows/s of ``driftloop serve`` (1,000 records per call, 2 clients);
- p50 end-to-end latency at a steady 1,000 records/s: from the producer's XADD (the input
  stream id's time) to the result on the output stream (its id's time), both Redis clocks.

Redis (6379) is the broker here; NATS and RabbitMQ run the same consumer code (the tests).
Run: ``uv run python -m bench.bench_streaming [--quick]`` -> ``bench/results/streaming.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import time
import uuid
from collections.abc import Iterator
from typing import Any

from bench import harness
from bench.bench_serving import Setup, cleanup_home, prepare, run_load, start_bentoml

AREA = "streaming"
REDIS_URL = "redis://127.0.0.1:6379/0"
BATCH_SIZES = (1, 100, 1_000)
STEADY_RATE = 1_000  # records/s for the latency phase
TICK_S = 0.01  # the steady producer sends STEADY_RATE * TICK_S records per tick


class Running:
    """A consumer in a thread of this process, on unique stream names; always stopped."""

    def __init__(self, setup: Setup, batch_size: int) -> None:
        from tasks.settings import Settings
        from tasks.streaming.config import StreamConfig
        from tasks.streaming.consumer import ConsumerThread, build_consumer, settle_heap

        tag = uuid.uuid4().hex[:8]
        self.config = StreamConfig(
            broker=REDIS_URL, input=f"bench-in-{tag}", output=f"bench-out-{tag}",
            dead_letter=f"bench-dead-{tag}", batch_size=batch_size, metrics_port=0,
        )  # fmt: skip
        self.thread = ConsumerThread(build_consumer(self.config, Settings(home=setup.home)))
        settle_heap()  # as `driftloop stream` does once its consumer is built
        self.consumer = self.thread.consumer

    def start(self) -> Running:
        self.thread.start()
        return self

    def scored(self) -> float:
        return sum(s.get() for s in _children(self.consumer.metrics.scored))

    def stop(self) -> None:
        try:
            self.thread.stop()
        finally:
            _redis().delete(self.config.input, self.config.output, self.config.dead_letter_name)


def _children(counter: Any) -> list[Any]:
    return [child._value for child in counter._metrics.values()]


def _redis():
    from redis import Redis

    return Redis.from_url(REDIS_URL)


def _bodies(records: list[dict], n: int) -> list[bytes]:
    import orjson

    return [orjson.dumps(records[i % len(records)]) for i in range(n)]


def _xadd(client: Any, stream: str, bodies: list[bytes]) -> None:
    pipe = client.pipeline(transaction=False)
    for body in bodies:
        pipe.xadd(stream, {"__data__": body})
    pipe.execute()


@contextlib.contextmanager
def one_core() -> Iterator[int | None]:
    """Every thread of this process (and those it starts) on one CPU, as ``taskset -c`` would
    pin it: the target is records/s on one core. The previous affinity is restored after."""
    if not hasattr(os, "sched_setaffinity"):
        yield None
        return
    before = os.sched_getaffinity(0)
    core = min(before)
    for tid in os.listdir("/proc/self/task"):
        os.sched_setaffinity(int(tid), {core})
    try:
        yield core
    finally:
        for tid in os.listdir("/proc/self/task"):
            with contextlib.suppress(OSError):  # a thread that ended meanwhile
                os.sched_setaffinity(int(tid), before)


def throughput(setup: Setup, batch_size: int, n: int, timeout: float) -> dict[str, float]:
    """Records/s draining a backlog of ``n`` records at ``batch_size``, the consumer pinned to
    one core (:func:`one_core`; Redis, a process of its own, is not)."""
    with one_core():
        return _drain(setup, batch_size, n, timeout)


def _drain(setup: Setup, batch_size: int, n: int, timeout: float) -> dict[str, float]:
    run = Running(setup, batch_size)
    try:
        client = _redis()
        for i in range(0, n, 5_000):
            _xadd(client, run.config.input, _bodies(setup.records, min(5_000, n - i)))
        before = run.scored()
        t0 = time.perf_counter()
        run.start()
        deadline = t0 + timeout
        while run.scored() - before < n and time.perf_counter() < deadline:
            time.sleep(0.005)
        elapsed = time.perf_counter() - t0
        done = run.scored() - before
    finally:
        run.stop()
    return {"records_per_s": done / elapsed, "records": done, "seconds": elapsed}


def steady_latency(setup: Setup, seconds: float) -> dict[str, float]:
    """End-to-end latency quantiles at a steady STEADY_RATE records/s (batch 1,000, 20 ms)."""
    import orjson

    run = Running(setup, 1_000).start()
    per_tick = int(STEADY_RATE * TICK_S)
    bodies = _bodies(setup.records, per_tick)
    try:
        client = _redis()
        sent, next_at, stop_at = 0, time.perf_counter(), time.perf_counter() + seconds
        while time.perf_counter() < stop_at:
            _xadd(client, run.config.input, bodies)
            sent += per_tick
            next_at += TICK_S
            time.sleep(max(0.0, next_at - time.perf_counter()))
        deadline = time.perf_counter() + 30
        while run.scored() < sent and time.perf_counter() < deadline:
            time.sleep(0.01)
        lat = []
        for entry_id, fields in client.xrange(run.config.output):
            from faststream.redis.parser.binary import BinaryMessageFormatV1

            out_ms = int(entry_id.split(b"-")[0])
            body = orjson.loads(BinaryMessageFormatV1.parse(fields[b"__data__"])[0])
            lat += [out_ms - int(r["key"].split("-")[0]) for r in body["results"]]
    finally:
        run.stop()
    lat.sort()
    return {
        "p50_ms": statistics.median(lat),
        "p99_ms": lat[min(len(lat) - 1, int(0.99 * len(lat)))],
        "records": len(lat),
        "sent": sent,
    }


def run(quick: bool = False) -> list[dict]:
    """Stream throughput at three batch sizes, steady-rate latency, and the HTTP peer."""
    sizes = {1: 50, 100: 1_000, 1_000: 3_000} if quick else {1: 2_000, 100: 50_000,
                                                               1_000: 200_000}  # fmt: skip
    setup = prepare(quick)
    rows: list[dict] = []
    note = f"Redis Streams on loopback; Telco LightGBM {setup.trees} trees, num_threads=1"
    try:
        for size in BATCH_SIZES:
            got = throughput(setup, size, sizes[size], timeout=120)
            target = ">= 20000 records/s" if size == 1_000 else None
            rows.append(harness.metric(
                AREA, f"stream_b{size}_records_per_s", got["records_per_s"], "records/s",
                target=target, note=f"backlog of {got['records']:.0f} drained at batch {size} "
                f"(log fsynced per batch; consumer pinned to one core); {note}",
            ))  # fmt: skip
        lat = steady_latency(setup, 1.0 if quick else 20.0)
        rows.append(harness.metric(
            AREA, "stream_steady_1000rps_p50", lat["p50_ms"], "ms", target="<= 50 ms",
            note=f"{lat['records']} of {lat['sent']} records at {STEADY_RATE}/s, batch 1,000, "
            f"20 ms window; XADD to result on the output stream (Redis clock, ms)",
        ))  # fmt: skip
        rows.append(harness.metric(AREA, "stream_steady_1000rps_p99", lat["p99_ms"], "ms"))
        rows += _http_rows(setup, quick, rows[2]["value"])
    finally:
        cleanup_home(setup.home)
    return rows


def _http_rows(setup: Setup, quick: bool, stream_b1000: float | None) -> list[dict]:
    if quick:  # a bentoml server takes longer to start than the whole smoke budget
        return [harness.quick_skip(AREA, "http_predict_batch_rows_per_s", "rows/s")]
    proc = start_bentoml(setup)
    try:
        got = run_load(proc.port, "/predict_batch", setup.records, 1_000, 2, 6.0)
    finally:
        proc.stop()
    ratio = stream_b1000 / got["rows_per_s"] if stream_b1000 else None
    return [
        harness.metric(AREA, "http_predict_batch_rows_per_s", got["rows_per_s"], "rows/s",
                       note="driftloop serve /predict_batch, 1,000 records per call, 2 clients"),
        harness.metric(AREA, "stream_b1000_vs_http_predict_batch", ratio, "x",
                       note="stream records/s at batch 1,000 over /predict_batch rows/s"),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="seconds, for a smoke run")
    args = parser.parse_args()
    rows = run(quick=args.quick)
    (harness.results_dir(args.quick) / f"{AREA}.json").write_text(json.dumps(rows, indent=2))
    for row in rows:
        print(f"{row['name']:<40} {row['value']!s:>12} {row['unit']:<10} {row['note']}")


if __name__ == "__main__":
    main()
