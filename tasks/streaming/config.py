"""The streaming consumer's settings: one pydantic model the CLI maps its flags onto."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator

SCHEMES = ("redis", "rediss", "nats", "amqp", "amqps", "kafka")


class StreamConfig(BaseModel):
    """Where records come from and go to, and how they are batched and acknowledged."""

    broker: str = Field(description="Broker URL; the scheme picks the broker.")
    input: str = Field(description="Stream, subject, queue or topic to read records from.")
    output: str = Field(description="Where scored batches are published.")
    dead_letter: str | None = Field(
        default=None, description="Where rejected records go; default '<input>.dead-letter'."
    )
    dataset: str = Field(default="telco", description="Dataset (schemas/<name>.py).")
    batch_size: int = Field(default=500, ge=1, le=10_000, description="Records per batch, at most.")
    batch_ms: float = Field(default=20.0, ge=0, description="Milliseconds to wait to fill a batch.")
    key_field: str | None = Field(
        default=None, description="Record field used as the key (default: the broker's id)."
    )
    group: str = Field(default="driftloop", description="Consumer group / durable name.")
    consumer: str = Field(default="driftloop-1", description="This consumer's name in the group.")
    ack_wait: float = Field(
        default=30.0, gt=0, description="Seconds before an unacknowledged record is redelivered."
    )
    metrics_port: int = Field(default=9464, ge=0, description="Loopback /metrics port (0: off).")

    @field_validator("broker")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        if scheme(url) not in SCHEMES:
            raise ValueError(f"unsupported broker URL scheme in {url!r}; use one of {SCHEMES}")
        return url

    @property
    def dead_letter_name(self) -> str:
        return self.dead_letter or f"{self.input}.dead-letter"

    @property
    def scheme(self) -> str:
        return scheme(self.broker)


def scheme(url: str) -> str:
    """The broker family of a URL (``rediss`` is redis, ``amqps`` is amqp)."""
    s = urlsplit(url).scheme.lower()
    return {"rediss": "redis", "amqps": "amqp"}.get(s, s)
