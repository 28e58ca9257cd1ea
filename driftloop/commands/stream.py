"""``driftloop stream``: score records from a broker (Redis, NATS, RabbitMQ; Kafka untested)."""

from __future__ import annotations

import typer

from tasks.streaming.config import StreamConfig

_F = StreamConfig.model_fields


def _opt(name: str, flag: str, **kwargs) -> typer.models.OptionInfo:
    """A flag whose default and help are the config model's (stated once)."""
    return typer.Option(_F[name].default, flag, help=_F[name].description, **kwargs)


def stream(
    broker: str = typer.Option(..., "--broker", help=_F["broker"].description),
    input: str = typer.Option(..., "--input", help=_F["input"].description),  # noqa: A002
    output: str = typer.Option(..., "--output", help=_F["output"].description),
    dead_letter: str | None = _opt("dead_letter", "--dead-letter"),
    dataset: str = _opt("dataset", "--dataset"),
    batch_size: int = _opt("batch_size", "--batch-size"),
    batch_ms: float = _opt("batch_ms", "--batch-ms"),
    key_field: str | None = _opt("key_field", "--key-field"),
    group: str = _opt("group", "--group"),
    consumer: str = _opt("consumer", "--consumer"),
    ack_wait: float = _opt("ack_wait", "--ack-wait"),
    metrics_port: int = _opt("metrics_port", "--metrics-port"),
) -> None:
    """Score records from a broker in micro-batches, at least once (SIGTERM stops cleanly)."""
    from driftloop.output import errors_as_exit
    from tasks.settings import get_settings
    from tasks.streaming.consumer import run_stream

    with errors_as_exit(False):
        config = StreamConfig(
            broker=broker, input=input, output=output, dead_letter=dead_letter,
            dataset=dataset, batch_size=batch_size, batch_ms=batch_ms, key_field=key_field,
            group=group, consumer=consumer, ack_wait=ack_wait, metrics_port=metrics_port,
        )  # fmt: skip
        settings = get_settings().ensure_dirs()

    def ready() -> None:
        typer.echo(f"streaming {config.input} -> {config.output} on {config.scheme}", err=True)

    run_stream(config, settings, on_ready=ready)


def register(app: typer.Typer) -> None:
    app.command("stream")(stream)
