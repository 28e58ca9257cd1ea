"""The streaming consumer: micro-batches from a broker, scored, logged, published, acknowledged.

Order per batch (at least once): validate and score -> prediction-log rows fsynced -> dead
letters and results published (brokers confirm) -> input records acknowledged. A crash at any
point leaves the records unacknowledged, so the broker redelivers them with the same key.
SIGTERM stops taking records, finishes those already received, acknowledges, and exits.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tasks.streaming.batch import BatchOutcome, NoModelError, Record, score_records
from tasks.streaming.brokers import connect
from tasks.streaming.metrics import StreamMetrics, Throughput, serve_metrics, stream_metrics

if TYPE_CHECKING:
    from faststream.message import StreamMessage

    from bentos.runtime import ModelWatcher
    from schemas.requests import RequestModels
    from tasks.predlog import BufferedLog
    from tasks.settings import Settings
    from tasks.streaming.config import StreamConfig

log = logging.getLogger("driftloop.streaming")

RETRY_SECONDS = 1.0  # pause before retrying a batch that failed to score or publish
IDLE_CHECK_SECONDS = 0.2  # how often an idle consumer looks at the stop flag
LOG_FLUSH_SECONDS = 60.0  # batches flush the log themselves; the timer is only a backstop


class StreamConsumer:
    """Reads ``config.input``; each micro-batch is handled by :meth:`process`."""

    def __init__(
        self,
        config: StreamConfig,
        models: RequestModels,
        watcher: ModelWatcher,
        prediction_log: BufferedLog,
        metrics: StreamMetrics,
    ) -> None:
        self.config = config
        self.models = models
        self.watcher = watcher
        self.prediction_log = prediction_log
        self.metrics = metrics
        self.link = connect(config, self.on_message)
        self.queue: asyncio.Queue[StreamMessage[Any]] = asyncio.Queue(2 * config.batch_size)
        self.stopping = asyncio.Event()
        self.throughput = Throughput()

    async def on_message(self, msg: StreamMessage[Any]) -> None:
        """FastStream's handler: hand the record to the batcher (backpressure when full)."""
        if self.stopping.is_set():
            return  # not acknowledged: redelivered to whoever consumes next
        self.metrics.records_in.inc()
        self.metrics.inflight.inc()
        await self.queue.put(msg)

    async def collect(self) -> list[StreamMessage[Any]]:
        """Up to ``batch_size`` records, waiting at most ``batch_ms`` after the first."""
        try:
            batch = [await asyncio.wait_for(self.queue.get(), IDLE_CHECK_SECONDS)]
        except TimeoutError:
            return []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.batch_ms / 1000
        size = self.config.batch_size
        while len(batch) < size:
            while len(batch) < size and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            remaining = deadline - loop.time()
            if len(batch) >= size or remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _retrying(self, stage: str, fn: Callable[[], Any]) -> Any:
        """``await fn()`` until it succeeds; None when a stop comes first (nothing acked)."""
        while True:
            try:
                return await fn()
            except NoModelError as exc:
                log.warning("%s; holding the batch", exc)
            except Exception:
                self.metrics.errors.labels(stage=stage).inc()
                log.exception("%s failed; retrying the batch", stage)
            if self.stopping.is_set():
                return None
            await asyncio.sleep(RETRY_SECONDS)

    async def process(self, msgs: list[StreamMessage[Any]]) -> bool:
        """Score, log, publish, acknowledge one batch; False if a stop left it unacknowledged."""
        records = [Record(self.link.key(m), m.body) for m in msgs]
        outcome: BatchOutcome | None = await self._retrying(
            "score",
            lambda: asyncio.to_thread(
                score_records,
                records,
                self.models,
                self.watcher,
                self.prediction_log,
                self.config.key_field,
            ),
        )
        if outcome is None or await self._retrying("publish", lambda: self._publish(outcome)):
            return False
        await asyncio.gather(*(m.ack() for m in msgs))
        self._count(msgs, outcome)
        return True

    async def _publish(self, outcome: BatchOutcome) -> None:
        publish = self.link.publish
        await asyncio.gather(
            *(publish(self.config.dead_letter_name, d) for d in outcome.dead_letters)
        )
        if outcome.results is not None:
            await publish(self.config.output, outcome.results)

    def _count(self, msgs: list[StreamMessage[Any]], outcome: BatchOutcome) -> None:
        m = self.metrics
        if outcome.scored:
            m.scored.labels(model_tag=outcome.model_tag).inc(outcome.scored)
        m.dead_lettered.inc(len(outcome.dead_letters))
        m.batch_size.observe(len(msgs))
        m.inflight.dec(len(msgs))
        m.throughput.set(self.throughput.add(len(msgs)))
        now = time.time()
        for msg in msgs:
            sent = self.link.sent_at(msg)
            if sent is not None:
                m.lag.observe(max(now - sent, 0.0))

    async def run(self, on_ready: Callable[[], None] | None = None) -> None:
        """Consume until :meth:`stop`; then finish every record already received."""
        await self.link.start()
        if on_ready is not None:
            on_ready()
        try:
            while not self.stopping.is_set() or not self.queue.empty():
                batch = await self.collect()
                if batch and not await self.process(batch):
                    break
        finally:
            await self.link.stop()

    def stop(self) -> None:
        self.stopping.set()


def build_consumer(config: StreamConfig, settings: Settings) -> StreamConsumer:
    """A consumer with the service's contract, alias watcher and prediction log."""
    from bentos.metrics import serving_metrics
    from bentos.runtime import ModelWatcher, prediction_log
    from schemas import load_dataset
    from schemas.requests import request_models

    dataset = load_dataset(config.dataset)
    serving = serving_metrics()
    watcher = ModelWatcher(dataset.name, settings, serving)
    watcher.check(force=True)
    watcher.start()
    predictions = prediction_log(settings, serving, flush_seconds=LOG_FLUSH_SECONDS)
    return StreamConsumer(config, request_models(dataset), watcher, predictions, stream_metrics())


def run_stream(
    config: StreamConfig, settings: Settings, on_ready: Callable[[], None] | None = None
) -> None:
    """Run a consumer in this process until SIGTERM or SIGINT (then stop gracefully)."""

    async def main() -> None:
        consumer = build_consumer(config, settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, consumer.stop)
        if config.metrics_port:
            serve_metrics(config.metrics_port)
        try:
            await consumer.run(on_ready)
        finally:
            consumer.watcher.stop()
            consumer.prediction_log.close()

    asyncio.run(main())
