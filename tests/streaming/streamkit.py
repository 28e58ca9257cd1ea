"""Streaming test kit: a home with a champion, raw broker clients, a consumer in a thread.

Producers and readers use each broker's own client (not FastStream), as an outside producer
and consumer would. Every name is unique per test and removed by :meth:`BrokerKit.cleanup`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import orjson

from tasks import registry
from tasks.settings import Settings
from tasks.streaming.brokers import jetstream_name
from tasks.streaming.config import StreamConfig
from tests.support.models import TinyModels, tiny_models
from tests.support.models import save_tiny as save
from tests.support.server import make_home
from tests.support.telco import REPO

BROKERS = {
    "redis": "redis://127.0.0.1:6379/0",
    "nats": "nats://127.0.0.1:4222",
    "amqp": "amqp://guest:guest@127.0.0.1:5672/",
}


@dataclass(frozen=True)
class Home:
    settings: Settings
    tags: dict[str, str]  # "a" (champion) and "b" (stored)
    tiny: TinyModels


def champion_home(prefix: str) -> Home:
    """A fresh home: tiny model A champion, B stored (not aliased)."""
    tiny = tiny_models()
    settings = Settings(home=make_home(prefix)).ensure_dirs()
    tags = {
        "a": save(tiny.a, tiny.features, settings, "a"),
        "b": save(tiny.b, tiny.features, settings, "b"),
    }
    registry.set_alias("telco", registry.CHAMPION, tags["a"], settings=settings)
    return Home(settings, tags, tiny)


def stream_config(scheme: str, **overrides) -> StreamConfig:
    """Unique names; a short redelivery wait (nats-py can strand a pull at a poll boundary:
    its records come back after ``ack_wait``, see docs/streaming.md)."""
    tag = uuid.uuid4().hex[:10]
    names = {"input": f"dl-in-{tag}", "output": f"dl-out-{tag}", "dead_letter": f"dl-dead-{tag}"}
    settings = {"metrics_port": 0, "ack_wait": 5.0, **names, **overrides}
    return StreamConfig(broker=BROKERS[scheme], **settings)


def run(coro):
    return asyncio.run(coro)


class BrokerKit:
    """Produce raw bodies to the input; read what was published; delete every name."""

    def __init__(self, config: StreamConfig) -> None:
        self.config = config
        self.scheme = config.scheme
        self.names = [config.input, config.output, config.dead_letter_name]

    # --- produce ----------------------------------------------------------------------------
    def produce(self, bodies: list[bytes]) -> list[str]:
        """Publish each body as one message; return the keys the consumer will report."""
        return run(getattr(self, f"_produce_{self.scheme}")(bodies))

    async def _produce_redis(self, bodies: list[bytes]) -> list[str]:
        from redis.asyncio import Redis

        client = Redis.from_url(self.config.broker)
        try:
            pipe = client.pipeline(transaction=False)
            for body in bodies:
                pipe.xadd(self.config.input, {"__data__": body})
            return [i.decode() for i in await pipe.execute()]
        finally:
            await client.aclose()

    async def _produce_nats(self, bodies: list[bytes]) -> list[str]:
        import nats

        nc = await nats.connect(self.config.broker)
        try:
            js = nc.jetstream()
            name = self.config.input
            await js.add_stream(name=jetstream_name(name), subjects=[name])
            acks = await asyncio.gather(*(js.publish(name, b) for b in bodies))
            return [str(a.seq) for a in acks]
        finally:
            await nc.close()

    async def _produce_amqp(self, bodies: list[bytes]) -> list[str]:
        import aio_pika

        conn = await aio_pika.connect(self.config.broker)
        try:
            channel = await conn.channel(publisher_confirms=True)
            await channel.declare_queue(self.config.input, durable=True)
            keys = [uuid.uuid4().hex for _ in bodies]
            for key, body in zip(keys, bodies, strict=True):
                message = aio_pika.Message(
                    body, message_id=key, delivery_mode=aio_pika.DeliveryMode.PERSISTENT
                )
                await channel.default_exchange.publish(message, routing_key=self.config.input)
            return keys
        finally:
            await conn.close()

    # --- read ---------------------------------------------------------------------------------
    def read(self, name: str) -> list[dict]:
        """Every message published to ``name`` so far, decoded (Rabbit: consumed)."""
        return [orjson.loads(b) for b in run(getattr(self, f"_read_{self.scheme}")(name))]

    async def _read_redis(self, name: str) -> list[bytes]:
        from faststream.redis.parser.binary import BinaryMessageFormatV1
        from redis.asyncio import Redis

        client = Redis.from_url(self.config.broker)
        try:
            entries = await client.xrange(name)
        finally:
            await client.aclose()
        return [BinaryMessageFormatV1.parse(fields[b"__data__"])[0] for _, fields in entries]

    async def _read_nats(self, name: str) -> list[bytes]:
        import nats
        from nats.js.errors import NotFoundError

        nc = await nats.connect(self.config.broker)
        try:
            js = nc.jetstream()
            try:
                info = await js.stream_info(jetstream_name(name))
            except NotFoundError:
                return []
            first, last = info.state.first_seq, info.state.last_seq
            out = []
            for seq in range(first, last + 1) if info.state.messages else ():
                out.append((await js.get_msg(jetstream_name(name), seq)).data)
            return out
        finally:
            await nc.close()

    async def _read_amqp(self, name: str) -> list[bytes]:
        import aio_pika

        conn = await aio_pika.connect(self.config.broker)
        try:
            channel = await conn.channel()
            queue = await channel.declare_queue(name, durable=True)
            out = []
            while (msg := await queue.get(no_ack=True, fail=False)) is not None:
                out.append(msg.body)
            return out
        finally:
            await conn.close()

    # --- cleanup ------------------------------------------------------------------------------
    def cleanup(self) -> None:
        run(getattr(self, f"_cleanup_{self.scheme}")())

    async def _cleanup_redis(self) -> None:
        from redis.asyncio import Redis

        client = Redis.from_url(self.config.broker)
        try:
            await client.delete(*self.names)
        finally:
            await client.aclose()

    async def _cleanup_nats(self) -> None:
        import nats
        from nats.js.errors import NotFoundError

        nc = await nats.connect(self.config.broker)
        try:
            js = nc.jetstream()
            for name in self.names:
                with contextlib.suppress(NotFoundError):
                    await js.delete_stream(jetstream_name(name))
        finally:
            await nc.close()

    async def _cleanup_amqp(self) -> None:
        import aio_pika

        conn = await aio_pika.connect(self.config.broker)
        try:
            channel = await conn.channel()
            for name in self.names:
                await channel.queue_delete(name)
        finally:
            await conn.close()


class Collected:
    """Results and dead letters read so far (Rabbit's reads consume, so they accumulate)."""

    def __init__(self, kit: BrokerKit) -> None:
        self.kit = kit
        self.results: list[dict] = []  # one entry per scored record, with the batch's model_tag
        self.dead: list[dict] = []

    def poll(self) -> Collected:
        fresh = self.kit.scheme == "amqp"
        batches = self.kit.read(self.kit.config.output)
        dead = self.kit.read(self.kit.config.dead_letter_name)
        results = [{"model_tag": b["model_tag"], **r} for b in batches for r in b["results"]]
        self.results = self.results + results if fresh else results
        self.dead = self.dead + dead if fresh else dead
        return self

    def keys(self) -> set[str]:
        return {r["key"] for r in self.results} | {d["key"] for d in self.dead}

    def wait_for(self, keys: list[str], timeout: float) -> Collected:
        deadline = time.monotonic() + timeout
        while not set(keys) <= self.poll().keys():
            if time.monotonic() > deadline:
                missing = len(set(keys) - self.keys())
                raise TimeoutError(f"{missing} of {len(keys)} records unaccounted after {timeout}s")
            time.sleep(0.3)
        return self


class ThreadConsumer:
    """A consumer in a thread of this process, as a context manager (always stopped)."""

    def __init__(self, config: StreamConfig, settings: Settings) -> None:
        from tasks.streaming.consumer import ConsumerThread, build_consumer

        self.running = ConsumerThread(build_consumer(config, settings))
        self.consumer = self.running.consumer

    def __enter__(self) -> ThreadConsumer:
        self.running.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.running.stop()


class ProcessConsumer:
    """A real ``driftloop stream`` subprocess (its own process group)."""

    def __init__(self, config: StreamConfig, settings: Settings, log: Path) -> None:
        args = ["--broker", config.broker, "--input", config.input, "--output", config.output,
                "--dead-letter", config.dead_letter_name, "--batch-size", str(config.batch_size),
                "--batch-ms", str(config.batch_ms), "--ack-wait", str(config.ack_wait),
                "--metrics-port", str(config.metrics_port)]  # fmt: skip
        env = {**os.environ, **settings.library_env(), "PYTHONPATH": str(REPO)}
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "driftloop", "stream", *args],
                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def wait_ready(self, timeout: float = 90) -> ProcessConsumer:
        deadline = time.monotonic() + timeout
        while "streaming " not in self.log.read_text(errors="replace").split("--- start")[-1]:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"consumer not ready:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)
        return self

    def send(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        self.send(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.send(signal.SIGKILL)
            self.proc.wait(10)
            raise


def leftover(config: StreamConfig) -> int:
    """Input records not yet acknowledged by the group (0 after a clean stop)."""

    async def redis() -> int:
        from redis.asyncio import Redis

        client = Redis.from_url(config.broker)
        try:
            return (await client.xpending(config.input, config.group))["pending"]
        finally:
            await client.aclose()

    async def nats_() -> int:
        import nats

        nc = await nats.connect(config.broker)
        try:
            info = await nc.jetstream().consumer_info(jetstream_name(config.input), config.group)
            return info.num_ack_pending + info.num_pending
        finally:
            await nc.close()

    async def amqp() -> int:
        import aio_pika

        conn = await aio_pika.connect(config.broker)
        try:
            queue = await (await conn.channel()).declare_queue(config.input, durable=True)
            return queue.declaration_result.message_count
        finally:
            await conn.close()

    return run({"redis": redis, "nats": nats_, "amqp": amqp}[config.scheme]())


def scrape(port: int) -> dict[str, float]:
    """The unlabelled samples of a ``/metrics`` page (labelled ones summed by name)."""
    import httpx

    out: dict[str, float] = {}
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            name = name.split("{", 1)[0]
            out[name] = out.get(name, 0.0) + float(value)
    return out
