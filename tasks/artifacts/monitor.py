"""The monitor run's artifacts: summary (with the service's processes), per-feature drift
table, a link to the HTML report."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tasks.artifacts import (
    Artifact,
    artifact_key,
    file_link,
    fmt,
    lineage,
    model_data_version,
    publish,
)

if TYPE_CHECKING:
    from tasks.monitoring.report import MonitorReport
    from tasks.settings import Settings


def monitor_markdown(report: MonitorReport, data_version: str | None = None) -> str:
    """The monitor run's summary: decision, drift, quality, performance, health, events."""
    d, dec = report.drift, report.decision
    q, p, h = report.quality, report.performance, report.health
    drifted = ", ".join(d.drifted_features if d else []) or "none"
    events = ", ".join(e.event for e in report.events) or "none"
    score, threshold, mode = (d.score, d.threshold, d.mode) if d else (0, None, None)
    return "\n".join(
        [
            f"# Monitor: {report.model_name} ({report.champion_tag})",
            lineage(report.champion_tag, data_version),
            "",
            f"Window {report.window.since.isoformat()} to {report.window.until.isoformat()}: "
            f"**{report.window.rows} rows**.",
            f"- Decision: **{dec.action}** ({dec.reason})",
            f"- Drift score: {score:.3f} / threshold {threshold} ({mode}); drifted: {drifted}",
            f"- Data quality: {'ok' if q.ok else '; '.join(q.issues)}",
            f"- Performance: {p.labelled} labels, AUC {fmt(p.auc)} vs test {fmt(p.champion_auc)}"
            f" ({p.reason})",
            f"- Health: {h.rate_per_min:.1f} req/min, p95 {fmt(h.latency_p95_ms)} ms, "
            f"error rate {fmt(h.error_rate)} ({h.error_source})",
            *_evidence_lines(report),
            f"- Events: {events}",
            *_process_lines(report),
            f"- Report: [{report.paths.html.name}]({file_link(report.paths.html)})",
        ]
    )


def _process_lines(report: MonitorReport) -> list[str]:
    p = report.process
    if p is None:
        return []
    uptime = "-" if p.uptime_seconds is None else f"{p.uptime_seconds:.0f} s"
    served = ", ".join(f"{a}: {' '.join(t)}" for a, t in p.served.items()) or "none"
    flag = "" if p.serves("champion", report.champion_tag) else " (**not the champion**)"
    return [
        f"- Service: {p.workers} worker(s), {p.resident_memory_bytes / 2**20:.0f} MiB resident, "
        f"{p.cpu_seconds:.1f} CPU s, uptime {uptime}; serving {served}{flag}"
    ]


def _evidence_lines(report: MonitorReport) -> list[str]:
    e, v = report.evidence, report.verdict
    if e is None:
        return []
    labelled = sum(w.labels for w in e.windows)
    domain = e.multivariate
    lines = [
        f"- Late labels: {labelled} over {len(e.windows)} window(s) of the last "
        f"{e.horizon_hours:g} h; {e.labels_since_last_run.labels} arrived since the last run",
        f"- Concept drift (estimate vs realized): {'yes' if e.concept_drift else 'no'}; "
        f"multivariate drift: "
        + ("-" if domain is None else f"{'yes' if domain.drifted else 'no'} "
           f"(AUC {domain.auc:.3f} vs {domain.threshold:.3f})"),
    ]  # fmt: skip
    if v is not None:
        lines.append(f"- Policy: {'retrain: ' + '; '.join(v.reasons) if v.retrain else 'no loss'}"
                     f" ({v.note})")  # fmt: skip
    return lines


def performance_table(report: MonitorReport) -> list[dict[str, Any]]:
    """Estimated against realized performance per prediction-time window (Prefect table)."""
    from tasks.estimation.stats import metric_items

    rows = []
    for w in report.evidence.windows if report.evidence else []:
        real, est = metric_items(w.realized), metric_items(w.estimated) if w.estimated else {}
        row: dict[str, Any] = {"window": w.start.isoformat(), "predictions": w.predictions,
                               "labels": w.labels, "coverage": w.coverage}  # fmt: skip
        for name, r in real.items():
            e = est.get(name)
            row[f"{name} estimated"] = None if e is None else round(e.value, 4)
            row[f"{name} realized"] = None if r is None else round(r.value, 4)
        row["concept drift"] = w.concept_drift
        rows.append(row)
    return rows


def drift_rows(report: MonitorReport) -> list[dict[str, Any]]:
    """Per-feature drift rows (feature, kind, method, statistic, p, importance, drifted)."""
    if report.drift is None:
        return []
    keys = ("feature", "kind", "method", "statistic", "p_adjusted", "importance", "drifted")
    return [{k: getattr(f, k) for k in keys} for f in report.drift.features]


def monitor_artifacts(report: MonitorReport, data_version: str | None = None) -> list[Artifact]:
    """Summary, per-feature drift table and a link to the HTML report."""
    key = artifact_key("monitor", report.model_name)
    out = [Artifact(key, "markdown", "driftloop monitor summary",
                    monitor_markdown(report, data_version))]  # fmt: skip
    rows = drift_rows(report)
    if rows:
        out.append(Artifact(f"{key}-drift", "table", "per-feature drift", rows))
    performance = performance_table(report)
    if performance:
        about = "estimated vs realized performance per window"
        out.append(Artifact(f"{key}-performance", "table", about, performance))
    html = report.paths.html
    out.append(Artifact(f"{key}-report", "link",
                        f"HTML report ({lineage(report.champion_tag, data_version)})",
                        file_link(html), link_text=html.name))  # fmt: skip
    return out


def publish_monitor(report: MonitorReport, settings: Settings | None = None) -> list[str]:
    """The monitor run's artifacts (only inside a flow run)."""
    return publish(monitor_artifacts(report, model_data_version(report.champion_tag, settings)))
