"""The monitor flow: profile the recent prediction-log window, judge drift, quality,
performance and health against the champion, score the late labels, estimate performance
without labels, decide by the policy, write the report, emit what is due."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from prefect import Task, flow, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field, field_validator

from schemas import load_dataset
from tasks import profiling
from tasks.artifacts import monitor as artifacts
from tasks.drift import DriftConfig
from tasks.monitoring import checks, decision, estimators, evidence, policy, report, state, window
from tasks.monitoring import serving as service
from tasks.monitoring.checks import HealthConfig, PerformanceConfig, QualityConfig
from tasks.monitoring.evidence import EvidenceConfig
from tasks.monitoring.findings import WindowFindings
from tasks.monitoring.policy import PolicyConfig
from tasks.settings import get_settings


class MonitorConfig(BaseModel):
    """Every threshold of a monitoring run, grouped by what it judges."""

    dataset: str = "telco"
    window_minutes: float = Field(24 * 60, gt=0, description="the window ends at `until`")
    until: datetime | None = Field(None, description="end of the window; default: now")
    now: datetime | None = Field(
        None, description="the run's time (cooldowns, history); default: the clock (replays)"
    )
    serving_url: str | None = Field(
        None, description="the service's base URL: its /metrics give rejected requests and 5xx"
    )
    drift: DriftConfig = Field(default_factory=DriftConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    performance: PerformanceConfig = Field(default_factory=PerformanceConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    evidence: EvidenceConfig = Field(default_factory=EvidenceConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)

    @field_validator("serving_url")
    @classmethod
    def _service_url(cls, url: str | None) -> str | None:
        return service.service_url(url) if url is not None else None

    def run_time(self) -> datetime:
        """``now`` if set (a replay), else the clock; UTC."""
        return (self.now or datetime.now(UTC)).astimezone(UTC)


_task = dict(cache_policy=NO_CACHE)
load_window = task(window.load_window, name="load_window", **_task)
load_reference = task(profiling.load_reference, name="load_reference", **_task)
load_estimators = task(estimators.load_estimators, name="load_estimators", **_task)
check_quality = task(checks.check_quality, name="check_quality", **_task)
profile_window = task(window.profile_window, name="profile_window", **_task)
check_drift = task(checks.check_drift, name="check_drift", **_task)
compute_performance = task(checks.compute_performance, name="compute_performance", **_task)
gather_evidence = task(evidence.gather_evidence, name="gather_evidence", **_task)
decide_window = task(decision.decide_window, name="decide_window", **_task)
write_report = task(report.write_report, name="write_report", **_task)
emit_events = task(decision.emit_events, name="emit_events", **_task)


@flow(name="monitor")
def monitor(config: MonitorConfig | None = None) -> dict[str, Any]:
    """One monitoring run; returns the report's JSON (also reports/monitor/<time>.json)."""
    config, settings = config or MonitorConfig(), get_settings()
    dataset, now = load_dataset(config.dataset), config.run_time()
    champion = window.load_champion(name=dataset.name, settings=settings)
    reference = load_reference(model_tag=champion.tag, settings=settings)
    bounds = window.window_bounds(minutes=config.window_minutes, until=config.until)
    rows = load_window(window=bounds, settings=settings, categorical=dataset.categorical_features)
    serving = state.serving_since_last_run(champion.name, config.serving_url, settings)
    process = service.scrape_process(config.serving_url)  # workers' CPU, memory, models
    quality = check_quality(window=rows, dataset=dataset, config=config.quality, serving=serving)
    current = profile_window(window=rows, dataset=dataset, now=now, settings=settings,
                             champion_tag=champion.tag)  # fmt: skip
    drift = check_drift(reference=reference, current=current.frame, dataset=dataset,
                        champion=champion, config=config.drift, quality=quality)  # fmt: skip
    labels = window.load_labels(settings=settings)
    performance = compute_performance(window=rows, labels=labels, champion=champion,
                                      config=config.performance)  # fmt: skip
    health = checks.compute_health(rows, bounds, config=config.health, serving=serving)
    est = load_estimators(reference=reference, dataset=dataset, champion=champion)
    gathered = gather_evidence(rows=rows, labels=labels, bounds=bounds, estimators=est,
        dataset=dataset, quality=quality, state=state.load_state(champion.name, settings),
        config=config.evidence, settings=settings, reference=reference)  # fmt: skip
    verdict = policy.judge(evidence=gathered, champion=champion, policy=config.policy,
                           performance=performance)  # fmt: skip
    findings = WindowFindings(champion, bounds, rows.height, drift, quality, performance, health,
                              gathered, verdict, process)  # fmt: skip
    due = decide_window(findings=findings, config=config.drift, now=now, settings=settings)
    built = report.build_report(findings, due.decision, run_at=now, profiles=(reference, current),
                                config=config.model_dump(mode="json"))  # fmt: skip
    written = write_report(report=built, stamp=window.run_stamp(now), settings=settings)
    announced = emit_events(report=written, due=due)  # rewritten with the event ids
    final = write_report(report=announced, stamp=window.run_stamp(now), settings=settings)
    artifacts.publish_monitor(final, settings)
    return final.to_json()


@contextlib.contextmanager
def _plain_steps() -> Iterator[None]:
    """This module's tasks as the plain functions they wrap, for the block."""
    module = sys.modules[__name__]
    tasks = {k: v for k, v in vars(module).items() if isinstance(v, Task)}
    try:
        for name, t in tasks.items():
            setattr(module, name, t.fn)
        yield
    finally:
        for name, t in tasks.items():
            setattr(module, name, t)


def run_monitor(config: MonitorConfig | None = None) -> dict[str, Any]:
    """The same run without the Prefect engine (no flow or task runs, no API): the replay
    benchmark and the memory benchmark call the real monitor code this way, many times."""
    with _plain_steps():
        return monitor.fn(config=config)
