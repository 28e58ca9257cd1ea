"""Crash and stop: SIGKILL a real ``driftloop stream`` three times under steady input, then
SIGTERM it. Nothing is lost, duplicates share their key, the log holds every published score."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import orjson
import pytest

from driftloop.supervise import free_port
from tasks.predlog import load_predictions
from tests.streaming.streamkit import (
    BrokerKit,
    Collected,
    ProcessConsumer,
    champion_home,
    leftover,
    scrape,
    stream_config,
)

SCHEMES = ["redis", "nats", "amqp"]
CHUNK, CHUNKS, PAUSE = 25, 60, 0.25  # 1,500 records over ~15 s
BAD_EVERY = 97  # one malformed record in every 97
KILL_AFTER = (0.05, 0.2, 0.5)  # seconds after the consumer reports ready


def _produce_steadily(kit: BrokerKit, bodies: list[bytes], keys: list[str]) -> None:
    for i in range(0, len(bodies), CHUNK):
        keys += kit.produce(bodies[i : i + CHUNK])
        time.sleep(PAUSE)


@pytest.mark.timeout(420)
@pytest.mark.parametrize("scheme", SCHEMES)
def test_sigkill_three_times_loses_nothing(scheme: str, tmp_path: Path) -> None:
    home = champion_home(f"stream-crash-{scheme}")
    records = home.tiny.records
    bodies = [
        b"{broken" if i % BAD_EVERY == BAD_EVERY - 1 else orjson.dumps(records[i % len(records)])
        for i in range(CHUNK * CHUNKS)
    ]
    config = stream_config(scheme, batch_size=50, batch_ms=20, ack_wait=2)
    kit = BrokerKit(config)
    log = tmp_path / "consumer.log"
    keys: list[str] = []
    producer = threading.Thread(target=_produce_steadily, args=(kit, bodies, keys), daemon=True)
    consumer: ProcessConsumer | None = None
    try:
        kit.produce([])  # declares the input before the first consumer starts
        producer.start()
        for delay in KILL_AFTER:
            consumer = ProcessConsumer(config, home.settings, log).wait_ready()
            time.sleep(delay)  # draining the backlog of its downtime: batches in hand
            consumer.stop(signal.SIGKILL)
        port = free_port()
        final = config.model_copy(update={"metrics_port": port})
        consumer = ProcessConsumer(final, home.settings, log).wait_ready()
        producer.join(60)
        assert not producer.is_alive() and len(keys) == len(bodies)
        got = Collected(kit).wait_for(keys, timeout=120)
        time.sleep(1.0)  # the last batch's metrics after its acknowledgement
        metrics = scrape(port)
        assert consumer.stop(signal.SIGTERM) == 0  # graceful: finishes, acknowledges, exits 0
        consumer = None

        bad = {k for k, b in zip(keys, bodies, strict=True) if b == b"{broken"}
        results: dict[str, set[float]] = {}
        for r in got.results:
            results.setdefault(r["key"], set()).add(r["score"])
        assert set(results) | {d["key"] for d in got.dead} == set(keys)  # nothing lost
        assert set(results) == set(keys) - bad and {d["key"] for d in got.dead} == bad
        assert all(len(s) == 1 for s in results.values())  # a duplicate is the same score
        logged = set(load_predictions(settings=home.settings)["request_id"])
        assert set(results) <= logged  # every published score has its log row
        assert leftover(config) == 0  # every record acknowledged
        counted = metrics["driftloop_stream_records_in_total"]
        assert counted > 0
        assert counted == (
            metrics["driftloop_stream_scored_total"]
            + metrics["driftloop_stream_dead_lettered_total"]
        )
    finally:
        if consumer is not None:
            consumer.stop(signal.SIGKILL)
        producer.join(30)
        kit.cleanup()
