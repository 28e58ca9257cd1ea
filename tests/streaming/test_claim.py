"""Redis: records a dead consumer read and never acknowledged are claimed in batches, once
each, and an idle claimer pauses between looks (FastStream's busy-looped under load)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.asyncio import Redis

from tasks.streaming.batch import Record
from tasks.streaming.brokers import _redis_records, claim_stale
from tests.streaming.streamkit import BROKERS, stream_config

DEAD_READ, BATCH = 120, 50


class Stop(BaseException):
    """Ends a claim loop under test."""


async def _claimed_from_a_dead_consumer() -> tuple[list[str], list[list[Record]]]:
    config = stream_config("redis", batch_size=BATCH, ack_wait=0.05)
    client = Redis.from_url(BROKERS["redis"])
    try:
        await client.xgroup_create(config.input, config.group, id="0", mkstream=True)
        ids = [(await client.xadd(config.input, {"__data__": b'{"n": %d}' % i})).decode()
               for i in range(DEAD_READ)]  # fmt: skip
        dead = f"dead-{uuid.uuid4().hex[:6]}"  # reads everything, acknowledges nothing
        await client.xreadgroup(config.group, dead, {config.input: ">"}, count=DEAD_READ)
        await asyncio.sleep(config.ack_wait * 2)  # idle long enough to be claimed
        got: list[list[Record]] = []

        async def handler(msg) -> None:
            got.append(_redis_records(msg))
            if sum(map(len, got)) >= DEAD_READ:
                raise Stop

        with pytest.raises(Stop):
            await asyncio.wait_for(claim_stale(client, config, handler), 30)
        return ids, got
    finally:
        await client.delete(config.input)
        await client.aclose()


def test_a_dead_consumers_records_are_claimed_in_batches_once_each() -> None:
    ids, got = asyncio.run(_claimed_from_a_dead_consumer())
    assert [r.key for batch in got for r in batch] == ids  # each once, in order
    assert all(0 < len(batch) <= BATCH for batch in got) and len(got) >= DEAD_READ // BATCH
    assert got[0][0].body == b'{"n": 0}'


class _NothingIdle:
    """A group whose pending entries are all in flight: the scan goes on, nothing to claim."""

    def __init__(self) -> None:
        self.calls = 0

    async def xautoclaim(self, *args, **kwargs):
        self.calls += 1
        if self.calls > 10:  # a loop that never pauses
            raise Stop
        return [b"7-0", [], []]  # the scan's cursor is not back at the start


def test_a_claimer_with_nothing_to_claim_pauses_after_every_look() -> None:
    client, pauses = _NothingIdle(), []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 3:
            raise Stop

    async def handler(msg) -> None:
        raise AssertionError("nothing was idle")

    config = stream_config("redis", ack_wait=2.0)
    with pytest.raises(Stop):
        asyncio.run(claim_stale(client, config, handler, sleep=sleep))
    assert client.calls == 3 and pauses == [0.5, 0.5, 0.5]  # ack_wait / 4


class _OneEntry:
    """One idle entry on every look."""

    def __init__(self) -> None:
        self.calls = 0

    async def xautoclaim(self, *args, **kwargs):
        self.calls += 1
        return [b"0-0", [(b"1-0", {b"__data__": b"{}"})], []]


def test_a_failing_handler_leaves_the_claimer_running_after_a_pause() -> None:
    client, pauses, handled = _OneEntry(), [], []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 2:
            raise Stop

    async def handler(msg) -> None:
        handled.append(_redis_records(msg))
        raise RuntimeError("the consumer failed on this batch")

    with pytest.raises(Stop):
        asyncio.run(claim_stale(client, stream_config("redis", ack_wait=2.0), handler, sleep=sleep))
    assert client.calls == 2 and [[r.key for r in b] for b in handled] == [["1-0"], ["1-0"]]
