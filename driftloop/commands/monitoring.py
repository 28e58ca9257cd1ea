"""``driftloop monitor``: one monitoring run (drift, quality, performance, health)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import typer

from driftloop.commands.options import JSON, MODEL_DATASET
from driftloop.output import CLIError, emit, errors_as_exit

if TYPE_CHECKING:
    from tasks.monitoring.report import MonitorReport


def monitor(
    dataset: str = MODEL_DATASET,
    window_minutes: float = typer.Option(None, help="Window length (default: the flow's)."),
    until: str = typer.Option(None, help="End of the window, ISO 8601 (default: now)."),
    hysteresis: int = typer.Option(None, help="Consecutive drifting windows needed to fire."),
    cooldown_minutes: float = typer.Option(None, help="Quiet time after a fire or retrain."),
    serving_url: str = typer.Option(
        None, "--serving-url", help="The service's base URL: its /metrics go into the report."
    ),
    as_json: bool = JSON,
) -> None:
    """Profile the recent prediction-log window against the champion's reference, write the
    report (reports/monitor/<time>.{html,json}) and emit drift/quality/performance events."""
    with errors_as_exit(as_json, writes=True):
        from flows.monitor import MonitorConfig
        from flows.monitor import monitor as monitor_flow
        from tasks.monitoring.report import MonitorReport

        config = _config(
            MonitorConfig, dataset, window_minutes, until, hysteresis, cooldown_minutes,
            serving_url,
        )  # fmt: skip
        report = MonitorReport.model_validate(monitor_flow(config=config))
        emit(summarize(report), as_json, _render)


def _config(
    model: Any, dataset, window_minutes, until, hysteresis, cooldown, serving_url=None
) -> Any:
    from tasks.monitoring.serving import service_url

    base = model(dataset=dataset).model_dump()
    if serving_url is not None:
        try:
            base["serving_url"] = service_url(serving_url)
        except ValueError as exc:
            raise CLIError(f"--serving-url {exc}") from None
    if window_minutes is not None:
        base["window_minutes"] = window_minutes
    if until is not None:
        try:
            base["until"] = datetime.fromisoformat(until)
        except ValueError:
            raise CLIError(f"--until {until!r} is not an ISO 8601 time") from None
        if base["until"].tzinfo is None:
            raise CLIError(f"--until {until!r} needs a time zone, e.g. {until}+00:00")
    if hysteresis is not None:
        base["drift"]["hysteresis_windows"] = hysteresis
    if cooldown is not None:
        base["drift"]["cooldown_minutes"] = cooldown
    try:
        return model.model_validate(base)
    except ValueError as exc:
        raise CLIError(f"invalid monitor option: {exc}") from None


def summarize(report: MonitorReport) -> dict[str, Any]:
    """The CLI's result: the decision and its grounds, with the report's paths."""
    doc, drift = report.to_json(), report.drift
    return {
        "model": report.model_name,
        "champion": report.champion_tag,
        "window": doc["window"],
        "action": report.decision.action,
        "reason": report.decision.reason,
        "drift_score": drift.score if drift else None,
        "threshold": drift.threshold if drift else None,
        "mode": drift.mode if drift else None,
        "drifted_features": drift.drifted_features if drift else [],
        "quality_ok": report.quality.ok,
        "quality_issues": report.quality.issues,
        "performance": doc["performance"],
        "health": doc["health"],
        "events": doc["events"],
        "report_html": str(report.paths.html),
        "report_json": str(report.paths.json),
    }


def _render(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"monitor {result['model']} ({result['champion']})", show_header=False)
    for key in ("action", "reason", "drift_score", "threshold", "mode", "drifted_features",
                "quality_ok", "events", "report_html"):  # fmt: skip
        value = result[key]
        if key == "events":
            value = ", ".join(e["event"] for e in value) or "none"
        table.add_row(key, str(value))
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command("monitor")(monitor)
