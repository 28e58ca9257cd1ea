"""One adapter per broker family, all on FastStream's one API.

Each adapter knows three broker-specific things: how to subscribe to the input with manual
acknowledgement (so a record is acknowledged only after its score is published and logged),
how to declare and publish to a destination durably, and the record's stable key (the same
key when the broker redelivers it, so consumers can drop duplicates). Kafka is written to the
same shape but untested here (no Kafka broker on these machines).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import orjson
from faststream import AckPolicy

from tasks.streaming.batch import Record
from tasks.streaming.config import StreamConfig

if TYPE_CHECKING:
    from faststream.message import StreamMessage

Handler = Callable[["StreamMessage[Any]"], Awaitable[None]]
log = logging.getLogger("driftloop.streaming")
_QUIET = {"logger": logging.getLogger("driftloop.streaming.broker"), "log_level": logging.DEBUG}
POLL_MS = 100  # how long one read blocks waiting for records (Redis, NATS pull)
CLAIM_PAUSE_S = 1.0  # at most this long between looks for records a dead consumer left (Redis)


@dataclass
class Link:
    """A connected broker: start/stop it, publish to a destination, key a message."""

    broker: Any
    publish: Callable[[str, bytes], Awaitable[None]]
    records: Callable[[StreamMessage[Any]], list[Record]]  # one message may carry a batch
    batched: bool  # the subscriber delivers many records per message
    setup: Callable[[], Awaitable[None]]  # declare destinations after the broker started
    prepare: Callable[[], Awaitable[None]] = lambda: _nothing()  # before the broker starts
    ack: Callable[[list[StreamMessage[Any]]], Awaitable[None]] = lambda msgs: _ack_each(msgs)
    close: Callable[[], Awaitable[None]] = lambda: _nothing()  # after the broker stopped

    async def start(self) -> None:
        await self.prepare()
        await self.broker.start()
        await self.setup()

    async def stop(self) -> None:
        await self.broker.stop()
        await self.close()


async def _ack_each(msgs: list[StreamMessage[Any]]) -> None:
    for msg in msgs:
        await msg.ack()


def connect(config: StreamConfig, handler: Handler) -> Link:
    """A :class:`Link` for ``config.broker`` with ``handler`` subscribed to the input."""
    makers = {"redis": _redis, "nats": _nats, "amqp": _rabbit, "kafka": _kafka}
    return makers[config.scheme](config, handler)


def _subscribed(handler: Handler) -> Callable[..., Awaitable[None]]:
    """``handler`` as a FastStream subscriber: given the raw message (its body stays bytes,
    its key is read by the adapter)."""
    from faststream import Context

    async def on_message(message: Any = Context("message")) -> None:  # noqa: B008
        await handler(message)

    return on_message


async def _nothing() -> None:
    return None


def _redis(config: StreamConfig, handler: Handler) -> Link:
    from faststream.redis import RedisBroker, StreamSub

    broker = RedisBroker(config.broker, **_QUIET)
    fresh = StreamSub(
        config.input, group=config.group, consumer=config.consumer, polling_interval=POLL_MS,
        batch=True, max_records=config.batch_size,
    )  # fmt: skip
    broker.subscriber(stream=fresh, ack_policy=AckPolicy.MANUAL, parser=_undecoded_batch)(
        _subscribed(handler)
    )

    async def publish(name: str, body: bytes) -> None:
        await broker.publish(body, stream=name)

    from redis.asyncio import Redis
    from redis.exceptions import ResponseError

    client = Redis.from_url(config.broker)  # connects on first use

    async def prepare() -> None:
        # a new group starts at the stream's beginning (FastStream would start it at '$' and
        # skip what producers wrote before the first start); an existing group is kept
        try:
            await client.xgroup_create(config.input, config.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def ack(msgs: list[StreamMessage[Any]]) -> None:  # one XACK for the whole batch
        await client.xack(config.input, config.group, *(i for m in msgs for i in _ids(m)))

    claiming: list[asyncio.Task[None]] = []

    async def setup() -> None:
        claiming.append(asyncio.create_task(claim_stale(client, config, handler)))

    async def close() -> None:
        for task in claiming:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await client.aclose()

    return Link(broker, publish, _redis_records, True, setup, prepare, ack, close)


@dataclass(frozen=True)
class Claimed:
    """Entries claimed from the group's pending list, shaped as a batch read's message."""

    raw_message: dict[str, list[Any]]  # {"message_ids": [...], "data": [fields, ...]}


async def claim_stale(
    client: Any,
    config: StreamConfig,
    handler: Handler,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Hand ``handler`` the records another (crashed) consumer read but never acknowledged,
    once idle ``ack_wait``: a batch at a time, pausing whenever there is none. (FastStream's
    claiming subscriber asks for one entry at a time and does not pause while the scan has
    pending entries left, which is always under load: it took half the event loop's CPU.)"""
    idle_ms, cursor = int(config.ack_wait * 1000), b"0-0"
    pause = min(CLAIM_PAUSE_S, config.ack_wait / 4)
    while True:
        claimed = False
        try:
            cursor, entries, *_ = await client.xautoclaim(
                config.input, config.group, config.consumer, idle_ms,
                start_id=cursor, count=config.batch_size,
            )  # fmt: skip
            entries = [(i, fields) for i, fields in entries if fields is not None]  # not deleted
            if entries:
                ids, data = (list(x) for x in zip(*entries, strict=True))
                await handler(Claimed({"message_ids": ids, "data": data}))  # type: ignore[arg-type]
                claimed = True
        except Exception:  # left pending: claimed again on a later look
            log.exception("claiming idle records of %s failed; retrying", config.input)
        if not claimed:
            await sleep(pause)


def _ids(msg: StreamMessage[Any]) -> list[bytes]:
    return msg.raw_message["message_ids"]


async def _undecoded_batch(raw: Any, original: Any) -> StreamMessage[Any]:
    """A batch read as a message without decoding and re-encoding every entry (FastStream's
    parser does; the consumer reads the raw entries itself in :func:`_redis_records`)."""
    from faststream.redis.message import RedisBatchStreamMessage

    return RedisBatchStreamMessage(raw_message=raw, body=b"[]", consumer=None, group=None)


def _redis_records(msg: StreamMessage[Any]) -> list[Record]:
    """Entries of a batch read (or one claimed entry); the stream id is the key."""
    data = msg.raw_message["data"]
    entries = data if isinstance(data, list) else [data]
    payloads = list(map(_payload, entries))
    keys = [i.decode() for i in _ids(msg)]
    sent = [int(k.partition("-")[0]) / 1000 for k in keys]  # a stream id starts with its ms
    return list(map(Record, keys, _redis_bodies(payloads), sent))


def _payload(entry: dict[bytes, bytes]) -> bytes:
    payload = entry.get(b"__data__")
    if payload is None:  # a plain XADD of fields: the record is those fields
        return orjson.dumps({k.decode(): v.decode() for k, v in entry.items()})
    return payload


def _redis_bodies(payloads: list[bytes]) -> list[bytes]:
    """:func:`_redis_body` of each payload; one scan of them all when none holds a mark of an
    envelope (the common case: plain JSON records)."""
    joined = b"\n".join(payloads)
    if any(mark in joined for mark in _ENVELOPE_MARKS):  # a header anywhere: look closer
        return [_redis_body(p) for p in payloads]
    return payloads


def _redis_body(payload: bytes) -> bytes:
    """The record in a ``__data__`` field: FastStream's binary or JSON envelope, else as is.

    FastStream's parser JSON-decodes a payload twice before deciding it is not an envelope;
    a payload that is neither binary nor mentions ``"data"`` (nor escapes a character, as
    ``"d\\u0061ta"`` would) cannot be an envelope, so it is taken as is without decoding.
    """
    header, *marks = _ENVELOPE_MARKS
    if payload.startswith(header) or any(mark in payload for mark in marks):
        return _binary_format().parse(payload)[0]
    return payload


# what an envelope holds and a plain record does not: FastStream's binary header, a "data" key
# or an escape that could spell one (the header: BinaryMessageFormatV1.IDENTITY_HEADER)
_ENVELOPE_MARKS = (b"\x89BIN\r\n\x1a\n", b'"data"', b"\\u")


@cache
def _binary_format() -> Any:
    # imported once, on first use (an import statement per record costs more than the check)
    from faststream.redis.parser.binary import BinaryMessageFormatV1

    return BinaryMessageFormatV1


def jetstream_name(subject: str) -> str:
    """The JetStream stream holding ``subject`` (stream names allow no dots or wildcards)."""
    return "driftloop-" + re.sub(r"[^A-Za-z0-9_-]", "_", subject)


def _nats(config: StreamConfig, handler: Handler) -> Link:
    from faststream.nats import ConsumerConfig, JStream, NatsBroker, PullSub

    broker = NatsBroker(config.broker, **_QUIET)
    source = JStream(jetstream_name(config.input), subjects=[config.input])
    broker.subscriber(
        config.input,
        stream=source,
        durable=config.group,
        pull_sub=PullSub(batch_size=config.batch_size, timeout=POLL_MS / 1000, batch=True),
        config=ConsumerConfig(ack_wait=config.ack_wait, max_ack_pending=4 * config.batch_size),
        ack_policy=AckPolicy.MANUAL,
    )(_subscribed(handler))
    for name in (config.output, config.dead_letter_name):  # declared at broker start
        broker.publisher(name, stream=JStream(jetstream_name(name), subjects=[name]))

    async def publish(name: str, body: bytes) -> None:
        await broker.publish(body, name, stream=jetstream_name(name))  # waits for the PubAck

    def records(msg: StreamMessage[Any]) -> list[Record]:
        return [
            Record(str(m.metadata.sequence.stream), m.data, m.metadata.timestamp.timestamp())
            for m in msg.raw_message
        ]

    return Link(broker, publish, records, True, _nothing)


def _rabbit(config: StreamConfig, handler: Handler) -> Link:
    from faststream.rabbit import Channel, RabbitBroker, RabbitQueue

    broker = RabbitBroker(config.broker, **_QUIET)
    broker.subscriber(
        RabbitQueue(config.input, durable=True),
        channel=Channel(prefetch_count=4 * config.batch_size),
        ack_policy=AckPolicy.MANUAL,
    )(_subscribed(handler))

    async def setup() -> None:
        for name in (config.output, config.dead_letter_name):
            await broker.declare_queue(RabbitQueue(name, durable=True))

    async def publish(name: str, body: bytes) -> None:
        await broker.publish(body, queue=name, persist=True)  # publisher-confirmed

    def records(msg: StreamMessage[Any]) -> list[Record]:
        raw = msg.raw_message
        # the AMQP message_id property survives redelivery (FastStream producers set one)
        sent = raw.timestamp.timestamp() if raw.timestamp is not None else None
        return [Record(raw.message_id or msg.message_id, raw.body, sent)]

    return Link(broker, publish, records, False, setup)


def _kafka(config: StreamConfig, handler: Handler) -> Link:  # untested: no Kafka broker here
    try:
        from faststream.kafka import KafkaBroker
    except ImportError as exc:
        raise RuntimeError("Kafka needs `uv add 'faststream[kafka]'` (aiokafka)") from exc

    broker = KafkaBroker(config.broker.split("://", 1)[1], **_QUIET)
    broker.subscriber(
        config.input,
        group_id=config.group,
        batch=True,
        max_records=config.batch_size,
        ack_policy=AckPolicy.MANUAL,
    )(_subscribed(handler))

    async def publish(name: str, body: bytes) -> None:
        await broker.publish(body, topic=name)

    def records(msg: StreamMessage[Any]) -> list[Record]:  # the topic position is the key
        return [
            Record(f"{r.topic}-{r.partition}-{r.offset}", r.value, r.timestamp / 1000)
            for r in msg.raw_message
        ]

    return Link(broker, publish, records, True, _nothing)
