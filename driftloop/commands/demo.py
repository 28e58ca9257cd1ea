"""``driftloop demo``: the whole loop on the shipped data, on local servers."""

from __future__ import annotations

from pathlib import Path

import httpx
import typer

from driftloop.commands.options import NOTIFY_URL
from driftloop.output import emit, errors_as_exit


def demo(
    fast: bool = typer.Option(False, "--fast", help="Smaller budgets (for tests): ≤ 2 minutes."),
    keep: bool = typer.Option(False, "--keep", help="Leave the Prefect UI and service running."),
    scenario: str = typer.Option(
        "concept",
        help="'concept': inputs unchanged, the relationship changes; late labels reveal it and "
        "a retrain fixes it. 'noise': inputs drift and labels become pure noise.",
    ),
    home: Path = typer.Option(
        Path(".driftloop") / "demo", help="State directory of the demo (reset at start)."
    ),
    dataset: str = typer.Option("telco", "--dataset", help="Dataset (schemas/<name>.py)."),
    data: Path = typer.Option(None, "--data", help="Data file (default: the shipped Telco CSV)."),
    notify_url: str = NOTIFY_URL,
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
) -> None:
    """Run the closed loop: train, serve, drift, detect, retrain, gate, promote, swap."""
    with errors_as_exit(as_json):
        from driftloop.demo import DemoConfig, run_demo

        if scenario not in ("concept", "noise"):
            raise ValueError(f"unknown scenario {scenario!r}: use 'concept' or 'noise'")
        config = DemoConfig(fast=fast, keep=keep, scenario=scenario, home=home, dataset=dataset,
                            notify_url=notify_url)  # fmt: skip
        if data is not None:
            config = config.model_copy(update={"data": data})
        _interrupt_on_signals()
        try:
            summary = run_demo(config)
        except KeyboardInterrupt:
            typer.echo("interrupted: everything the demo started was stopped", err=True)
            raise typer.Exit(130) from None
        except (httpx.HTTPError, TimeoutError) as exc:
            raise RuntimeError(f"demo failed talking to a local server: {exc}") from None
        if as_json:
            emit(summary, True)


def _interrupt_on_signals() -> None:
    """Ctrl-C and SIGTERM both unwind the demo, so its finally-block stops every process it
    started (a shell that started us in the background may have set SIGINT to 'ignore')."""
    import signal

    def _raise(signum, frame):  # noqa: ARG001
        # the first signal unwinds; more while stopping would abort the cleanup: ignore them
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, _raise)
    signal.signal(signal.SIGTERM, _raise)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
