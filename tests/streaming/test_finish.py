"""A scored batch's finishing order, broker-free: log flushed, then published, then
acknowledged; a stop while publishing keeps failing leaves the batch unacknowledged."""

from __future__ import annotations

import asyncio

import pytest

from tasks.streaming.batch import BatchOutcome, Record
from tasks.streaming.config import StreamConfig
from tasks.streaming.consumer import Delivery, Scored, StreamConsumer
from tasks.streaming.metrics import stream_metrics


class _Log:
    def __init__(self, steps: list[str]) -> None:
        self.steps = steps

    def flush(self) -> None:
        self.steps.append("flush")


class _Link:
    def __init__(self, steps: list[str], consumer: StreamConsumer, fail: bool) -> None:
        self.steps, self.consumer, self.fail = steps, consumer, fail

    async def publish(self, name: str, body: bytes) -> None:
        if self.fail:
            self.consumer.stop()  # a SIGTERM arrives while the broker refuses publishes
            raise ConnectionError("broker down")
        self.steps.append(f"publish {name}")

    async def ack(self, messages: list) -> None:
        self.steps.append("ack")


@pytest.mark.parametrize("fail", [False, True])
def test_finish_logs_then_publishes_then_acks_and_a_stop_acks_nothing(fail: bool) -> None:
    steps: list[str] = []
    config = StreamConfig(broker="redis://127.0.0.1:1/0", input="in", output="out", metrics_port=0)

    async def main() -> bool:
        consumer = StreamConsumer(config, None, None, _Log(steps), stream_metrics())  # type: ignore[arg-type]
        consumer.link = _Link(steps, consumer, fail)  # type: ignore[assignment]
        record = Record("1-0", b"{}")
        outcome = BatchOutcome(b"{}", [b"dead"], {"m": 1})
        return await consumer.finish(Scored([Delivery(None, [record])], [record], outcome))  # type: ignore[arg-type]

    done = asyncio.run(main())
    if fail:
        assert not done and "ack" not in steps  # never acknowledged without its publish
    else:
        assert done and steps == ["flush", "publish in.dead-letter", "publish out", "ack"]
