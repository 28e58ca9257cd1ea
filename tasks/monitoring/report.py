"""The monitor run's report: one typed :class:`MonitorReport` and its JSON and HTML files.

The JSON written to ``reports/monitor/<stamp>.json`` is :meth:`MonitorReport.to_json`: plain
JSON types, non-finite numbers as null, keys in the order they always had. The HTML page is
rendered from that JSON document and the recent reports (:mod:`tasks.monitoring.html`). The
Prefect UI's artifacts are :mod:`tasks.artifacts`' job.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, field_serializer

from tasks.drift import DriftDecision, DriftResult
from tasks.io import atomic_write, write_json
from tasks.monitoring.checks import Health, Performance, Quality
from tasks.monitoring.evidence import Evidence
from tasks.monitoring.html import recent_windows, render_report_html
from tasks.monitoring.policy import Verdict
from tasks.monitoring.serving import ServiceProcess
from tasks.monitoring.state import IsoTime
from tasks.settings import Settings, get_settings

if TYPE_CHECKING:
    from tasks.monitoring.findings import WindowFindings
    from tasks.monitoring.window import WindowProfile
    from tasks.profiling import Reference


@dataclass(frozen=True)
class ReportPaths:
    json: Path
    html: Path


class WindowSummary(BaseModel):
    since: IsoTime
    until: IsoTime
    rows: int


class SentEvent(BaseModel):
    """One event this run emitted (``id`` None: Prefect was off; the outbox still has it)."""

    event: str
    id: str | None
    reason: str


class MonitorReport(BaseModel):
    """Everything one monitor run found, decided and wrote. Field order = the JSON's key order."""

    run_at: IsoTime
    model_name: str
    champion_tag: str
    config: dict[str, Any]
    window: WindowSummary
    drift: DriftResult | None
    decision: DriftDecision
    quality: Quality
    performance: Performance
    health: Health
    reference_profile: Path
    current_profile: Path
    profiles: dict[str, dict[str, dict[str, Any]]]
    report: ReportPaths | None = None
    events: list[SentEvent] = Field(default_factory=list)
    evidence: Evidence | None = None  # late labels, estimates, trust, multivariate (#14)
    verdict: Verdict | None = None  # the decision policy on that evidence
    process: ServiceProcess | None = None  # the service's workers (serving_url set)

    @field_serializer("drift")
    def _drift(self, drift: DriftResult | None) -> dict[str, Any] | None:
        return drift.to_dict() if drift is not None else None  # + drifted_features

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON types (non-finite floats become null)."""
        return json.loads(self.model_dump_json())

    @property
    def paths(self) -> ReportPaths:
        if self.report is None:
            raise ValueError("the report has not been written yet (write_report)")
        return self.report


def build_report(
    findings: WindowFindings,
    decision: DriftDecision,
    *,
    run_at: datetime,
    config: dict[str, Any],
    profiles: tuple[Reference, WindowProfile],
) -> MonitorReport:
    """The run's report, with per-column summaries of both whylogs ``profiles`` (the
    champion's reference, the window's)."""
    from tasks.profiling import summarize_profile

    (reference, current), found = profiles, findings
    champion, bounds = found.champion, found.bounds
    return MonitorReport(
        run_at=run_at, model_name=champion.name, champion_tag=champion.tag, config=config,
        window=WindowSummary(since=bounds.since, until=bounds.until, rows=found.rows),
        drift=found.drift, decision=decision, quality=found.quality,
        performance=found.performance, health=found.health,
        reference_profile=reference.profile_path, current_profile=current.path,
        profiles={"reference": summarize_profile(reference.profile()),
                  "current": summarize_profile(current.view)},
        evidence=found.evidence, verdict=found.verdict, process=found.process,
    )  # fmt: skip


def write_report(
    report: MonitorReport, stamp: str, settings: Settings | None = None
) -> MonitorReport:
    """``reports/monitor/<stamp>.json`` and the HTML page rendered from it; returns the report
    with its paths set."""
    folder = (settings or get_settings()).reports_dir / "monitor"
    paths = ReportPaths(folder / f"{stamp}.json", folder / f"{stamp}.html")
    report = report.model_copy(update={"report": paths})
    document = report.to_json()
    write_json(paths.json, document)
    history = recent_windows(folder)  # the JSON just written is the newest
    atomic_write(paths.html, render_report_html(document, history).encode())
    return report
