"""The latest monitor report's numbers as Prometheus series, served by the service.

The monitor is a scheduled flow, not a server: rather than a Pushgateway, every serving worker
reads the newest ``reports/monitor/<stamp>.json`` under ``DRIFTLOOP_HOME`` (re-parsed only when
it changes) and sets these gauges, so one scrape of the service carries its traffic, its
process figures and the statistical verdicts together. A value the report lacks (no labels
yet: no realized AUC) is NaN, never the previous report's number.

Series (labels ``model_name``; ``performance`` also ``metric`` and ``source``):
``driftloop_monitor_last_run_timestamp_seconds`` (0: the monitor has not run yet),
``driftloop_monitor_window_rows``, ``driftloop_monitor_drift_score``,
``driftloop_monitor_drift_threshold``, ``driftloop_monitor_drifted_features``,
``driftloop_monitor_drifting``, ``driftloop_monitor_quality_ok``,
``driftloop_monitor_labelled_rows``, ``driftloop_monitor_performance{source="realized"|
"champion_test", metric="auc"|"precision"|"recall"}``, ``driftloop_monitor_performance_degraded``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Gauge

    from tasks.settings import Settings

PERFORMANCE_METRICS = ("auc", "precision", "recall")
# the champion's own test metrics are reported as champion_<metric> beside the realized ones
PERFORMANCE_SOURCES = {"realized": "{}", "champion_test": "champion_{}"}


@dataclass(frozen=True)
class MonitorSnapshot:
    """What alerts and dashboards watch of one monitor report: ``scalars`` by the names of
    :data:`_SCALARS` (absent or None: not in the report), ``performance`` by (source, metric).
    ``run_at`` is unix seconds, 0.0 when the monitor has not run."""

    model_name: str
    scalars: dict[str, float | bool | None]
    performance: dict[tuple[str, str], float | None] = field(default_factory=dict)


def monitor_reports_dir(settings: Settings) -> Path:
    """Where ``tasks.monitoring.report.write_report`` puts the monitor's reports."""
    return settings.reports_dir / "monitor"


def latest_report(folder: Path) -> Path | None:
    """The newest report JSON (file names are sortable UTC stamps)."""
    try:
        return max(folder.glob("*.json"), key=lambda p: p.name, default=None)
    except OSError:
        return None


def snapshot_from_report(report: dict[str, Any], model_name: str) -> MonitorSnapshot:
    """The watched numbers of a report as ``tasks.monitoring.report.MonitorReport`` shapes it."""
    drift = report.get("drift") or {}  # None when a schema break stopped the drift statistics
    perf = report.get("performance") or {}
    quality = report.get("quality") or {}
    drifted = drift.get("drifted_features")
    scalars = {
        "run_at": datetime.fromisoformat(report["run_at"]).timestamp(),
        "window_rows": (report.get("window") or {}).get("rows"),
        "drift_score": drift.get("score"),
        "drift_threshold": drift.get("threshold"),
        "drifted_features": len(drifted) if drifted is not None else None,
        "drifting": drift.get("drifting"),
        "quality_ok": quality.get("ok"),
        "labelled_rows": perf.get("labelled"),
        "performance_degraded": perf.get("degraded"),
    }
    performance = {
        (source, metric): perf.get(key.format(metric))
        for source, key in PERFORMANCE_SOURCES.items()
        for metric in PERFORMANCE_METRICS
    }
    return MonitorSnapshot(report.get("model_name") or model_name, scalars, performance)


def read_snapshot(path: Path | None, model_name: str) -> MonitorSnapshot:
    """The snapshot of the report at ``path``; a never-run snapshot when there is none."""
    if path is None:
        return MonitorSnapshot(model_name, {"run_at": 0.0})
    return snapshot_from_report(json.loads(path.read_text()), model_name)


@dataclass(frozen=True)
class ReportGauges:
    """One gauge per scalar of :class:`MonitorSnapshot`, plus the performance gauge."""

    scalars: dict[str, Gauge]  # MonitorSnapshot scalar -> gauge{model_name}
    performance: Gauge  # {model_name, source, metric}

    def publish(self, snap: MonitorSnapshot) -> None:
        for name, gauge in self.scalars.items():
            gauge.labels(model_name=snap.model_name).set(_number(snap.scalars.get(name)))
        for (source, metric), value in snap.performance.items():
            labels = {"model_name": snap.model_name, "source": source, "metric": metric}
            self.performance.labels(**labels).set(_number(value))


_SCALARS = {  # MonitorSnapshot scalar -> (series name, help)
    "run_at": ("driftloop_monitor_last_run_timestamp_seconds",
               "When the newest monitor report was made (unix time; 0: never)."),
    "window_rows": ("driftloop_monitor_window_rows", "Prediction-log rows the monitor judged."),
    "drift_score": ("driftloop_monitor_drift_score",
                    "Importance-weighted share of drifted features in the monitor's window."),
    "drift_threshold": ("driftloop_monitor_drift_threshold",
                        "The drift score at which the monitor calls the window drifting."),
    "drifted_features": ("driftloop_monitor_drifted_features", "Features that drifted."),
    "drifting": ("driftloop_monitor_drifting", "1 if the monitor's window drifts."),
    "quality_ok": ("driftloop_monitor_quality_ok", "1 if the window passed data quality."),
    "labelled_rows": ("driftloop_monitor_labelled_rows", "Window rows with a feedback label."),
    "performance_degraded": ("driftloop_monitor_performance_degraded",
                             "1 if realized performance fell below the champion's test."),
}  # fmt: skip


def report_gauges(registry: CollectorRegistry | None = None) -> ReportGauges:
    """The gauges (in ``registry``, default the process registry). ``livemostrecent``: every
    worker sets the same numbers; a scrape shows the newest, without a pid label."""
    from prometheus_client import REGISTRY, Gauge

    reg, mode = registry or REGISTRY, "livemostrecent"
    return ReportGauges(
        scalars={
            attr: Gauge(name, doc, ["model_name"], registry=reg, multiprocess_mode=mode)
            for attr, (name, doc) in _SCALARS.items()
        },
        performance=Gauge(
            "driftloop_monitor_performance",
            "The monitor's performance figures: realized on labelled rows, or the champion's test.",
            ["model_name", "source", "metric"],
            registry=reg,
            multiprocess_mode=mode,
        ),
    )


def _number(value: float | bool | None) -> float:
    return math.nan if value is None else float(value)
