"""The monitor flow: profile the recent prediction-log window, judge drift, quality,
performance and health against the champion, write the report, emit what is due."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow
from pydantic import BaseModel, Field

from schemas import load_dataset
from tasks import profiling
from tasks.artifacts import monitor as artifacts
from tasks.drift import DriftConfig
from tasks.monitoring import checks, decision, report, state, window
from tasks.monitoring import serving as service
from tasks.monitoring.checks import HealthConfig, PerformanceConfig, QualityConfig
from tasks.settings import get_settings


# No Prefect tasks: every step is a plain function, cheap and local; a task run per step would
# cost more than the steps (and `monitor.fn` would need an API). Like main before the split.
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
def monitor(config: MonitorConfig | None = None) -> dict[str, Any]:
    """One monitoring run; returns the report's JSON (also reports/monitor/<time>.json)."""
    config, settings, now = config or MonitorConfig(), get_settings(), datetime.now(UTC)
    dataset, stamp = load_dataset(config.dataset), window.run_stamp(now)
    champion = window.load_champion(name=dataset.name, settings=settings)
    reference = profiling.load_reference(model_tag=champion.tag, settings=settings)
    bounds = window.window_bounds(minutes=config.window_minutes, until=config.until)
    rows = window.load_window(window=bounds, settings=settings)
    serving = state.serving_since_last_run(champion.name, config.serving_url, settings)
    process = service.scrape_process(config.serving_url)  # workers' CPU, memory, models
    quality = checks.check_quality(
        window=rows, dataset=dataset, config=config.quality, serving=serving
    )
    current = window.monitor_frames(rows, dataset, score_column=profiling.SCORE_COLUMN)
    current_view = profiling.profile_frame(frame=current)
    profile = profiling.write_profile(current_view, settings.window_profiles_dir / f"{stamp}.bin")
    drift = checks.check_drift(reference=reference, current=current, dataset=dataset,
                               champion=champion, config=config.drift, quality=quality)  # fmt: skip
    labels = window.load_labels(settings=settings)
    performance = checks.compute_performance(rows, labels, champion, config=config.performance)
    health = checks.compute_health(rows, bounds, config=config.health, serving=serving)
    due = decision.decide_window(drift=drift, quality=quality, performance=performance,
                                 champion=champion, config=config.drift, now=now,
                                 settings=settings)  # fmt: skip
    built = report.build_report(
        run_at=now, champion=champion, config=config.model_dump(mode="json"), bounds=bounds,
        rows=rows.height, drift=drift, decision=due.decision, quality=quality,
        performance=performance, health=health, reference=reference,
        current_profile=profile, current_view=current_view, process=process,
    )  # fmt: skip
    written = report.write_report(report=built, stamp=stamp, settings=settings)
    announced = decision.emit_events(report=written, due=due)  # rewritten with the event ids
    final = report.write_report(report=announced, stamp=stamp, settings=settings)
    artifacts.publish_monitor(final, settings)
    return final.to_json()
