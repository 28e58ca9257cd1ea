"""The monitor flow: profile the recent prediction-log window, judge drift, quality,
performance and health against the champion, write the report, emit what is due."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow
from pydantic import BaseModel, Field

from tasks.drift import DriftConfig
from tasks.monitor import HealthConfig, PerformanceConfig, QualityConfig


class MonitorConfig(BaseModel):
    """Every threshold of a monitoring run, grouped by what it judges."""

    dataset: str = "telco"
    window_minutes: float = Field(24 * 60, gt=0, description="the window ends at `until`")
    until: datetime | None = Field(None, description="end of the window; default: now")
    serving_url: str | None = Field(
        None, description="the service's base URL: its /metrics give rejected requests and 5xx"
    )
    drift: DriftConfig = Field(default_factory=DriftConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    performance: PerformanceConfig = Field(default_factory=PerformanceConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)


@flow(name="monitor")
def monitor(config: MonitorConfig | None = None, emitter: Any = None) -> dict[str, Any]:
    """One monitoring run; returns the report (also under reports/monitor/<time>.json).

    ``emitter`` defaults to ``tasks.events``; tests pass a fake with the same ``emit_*``.
    """
    from schemas import load_dataset
    from tasks import monitor as m
    from tasks.drift import compute_drift
    from tasks.profiling import (
        SCORE_COLUMN,
        load_reference,
        profile_frame,
        summarize_profile,
        write_profile,
    )
    from tasks.settings import get_settings

    config, settings, now = config or MonitorConfig(), get_settings(), datetime.now(UTC)
    emitter, stamp = emitter or _events(), m.run_stamp(now)
    dataset = load_dataset(config.dataset)
    champion = m.load_champion(dataset.name, settings)
    reference = load_reference(champion.tag, settings)
    bounds = m.window_bounds(config.window_minutes, config.until)
    window = m.load_window(bounds, settings)
    serving = m.serving_counters(champion.name, config.serving_url, settings)
    quality = m.check_quality(window, dataset, config.quality, serving)
    current = m.monitor_frames(window, dataset, SCORE_COLUMN)
    current_view = profile_frame(current)
    profile_path = write_profile(current_view, settings.window_profiles_dir / f"{stamp}.bin")
    drift = None
    if not quality.schema_break:
        drift = compute_drift(
            reference.sample,
            current,
            numeric=dataset.numeric_features,
            categorical=dataset.categorical_features,
            importance=champion.importance,
            config=config.drift,
            score_column=SCORE_COLUMN,
            current_score_column=SCORE_COLUMN,
        )
    labels = m.load_labels(settings)
    performance = m.compute_performance(window, labels, champion, config.performance)
    health = m.compute_health(window, bounds, config.health, serving)
    due = m.decide_window(drift, quality, performance, champion, config.drift, now, settings)
    report = m.build_report(
        run_at=now,
        model_name=champion.name,
        champion_tag=champion.tag,
        config=config.model_dump(mode="json"),
        window={"since": bounds.since, "until": bounds.until, "rows": window.height},
        drift=drift,
        decision=due["decision"],
        quality=quality,
        performance=performance,
        health=health,
        reference_profile=reference.profile_path,
        current_profile=profile_path,
        profiles={
            "reference": summarize_profile(reference.profile()),
            "current": summarize_profile(current_view),
        },
    )
    m.write_report(report, stamp, settings)
    report["events"] = m.emit_events(report, due, quality, emitter)
    m.write_report(report, stamp, settings)  # again, with the event ids
    _publish_artifacts(report, m.summary_markdown(report), m.drift_table(report))
    return report


def _events() -> Any:
    from tasks import events

    events.flush_outbox()  # re-send what an earlier run could not deliver
    return events


def _publish_artifacts(report: dict[str, Any], markdown: str, table: list[dict]) -> None:
    """Markdown summary + per-feature table in the Prefect UI (only inside a flow run)."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is None:
        return
    key = f"monitor-{report['model_name']}".lower().replace("_", "-")
    create_markdown_artifact(markdown, key=key, description="driftloop monitor summary")
    if table:
        create_table_artifact(table, key=f"{key}-drift", description="per-feature drift")
