"""The monitor run's report: one typed :class:`MonitorReport`, its JSON and HTML files, and the
Prefect UI summary (markdown + per-feature table).

The JSON written to ``reports/monitor/<stamp>.json`` is :meth:`MonitorReport.to_json`: plain
JSON types, non-finite numbers as null, keys in the order they always had. The HTML page is
rendered from that JSON document (self-contained, no CDN, works offline).
"""

from __future__ import annotations

import html
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
from tasks.monitoring.policy import Verdict
from tasks.monitoring.state import IsoTime
from tasks.settings import Settings, get_settings

if TYPE_CHECKING:
    from tasks.monitoring.window import Champion, Window
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
    *,
    run_at: datetime,
    champion: Champion,
    config: dict[str, Any],
    bounds: Window,
    rows: int,
    drift: DriftResult | None,
    decision: DriftDecision,
    quality: Quality,
    performance: Performance,
    health: Health,
    reference: Reference,
    current_profile: Path,
    current_view: Any,
    evidence: Evidence | None = None,
    verdict: Verdict | None = None,
) -> MonitorReport:
    """The run's report, with per-column summaries of both whylogs profiles."""
    from tasks.profiling import summarize_profile

    return MonitorReport(
        run_at=run_at, model_name=champion.name, champion_tag=champion.tag, config=config,
        window=WindowSummary(since=bounds.since, until=bounds.until, rows=rows),
        drift=drift, decision=decision, quality=quality, performance=performance,
        health=health, reference_profile=reference.profile_path,
        current_profile=current_profile,
        profiles={"reference": summarize_profile(reference.profile()),
                  "current": summarize_profile(current_view)},
        evidence=evidence, verdict=verdict,
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
    atomic_write(paths.html, render_report_html(document).encode())
    return report


def summary_markdown(report: MonitorReport) -> str:
    """A short markdown summary for the Prefect UI."""
    d, dec = report.drift, report.decision
    q, p, h = report.quality, report.performance, report.health
    drifted = ", ".join(d.drifted_features if d else []) or "none"
    events = ", ".join(e.event for e in report.events) or "none"
    score, threshold, mode = (d.score, d.threshold, d.mode) if d else (0, None, None)
    return "\n".join(
        [
            f"# Monitor: {report.model_name} ({report.champion_tag})",
            f"Window {report.window.since.isoformat()} to {report.window.until.isoformat()}: "
            f"**{report.window.rows} rows**.",
            f"- Decision: **{dec.action}** ({dec.reason})",
            f"- Drift score: {score:.3f} / threshold {threshold} ({mode}); drifted: {drifted}",
            f"- Data quality: {'ok' if q.ok else '; '.join(q.issues)}",
            f"- Performance: {p.labelled} labels, AUC {p.auc} vs test {p.champion_auc}"
            f" ({p.reason})",
            f"- Health: {h.rate_per_min:.1f} req/min, p95 {h.latency_p95_ms} ms, "
            f"error rate {h.error_rate}",
            *_evidence_lines(report),
            f"- Events: {events}",
            f"- Report: {report.paths.html}",
        ]
    )


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


def drift_table(report: MonitorReport) -> list[dict[str, Any]]:
    """Per-feature drift rows for a Prefect table artifact."""
    keys = ("feature", "kind", "method", "statistic", "p_adjusted", "importance", "drifted")
    features = (report.to_json()["drift"] or {}).get("features", [])
    return [{k: f.get(k) for k in keys} for f in features]


def publish_artifacts(report: MonitorReport) -> None:
    """Markdown summary + per-feature table in the Prefect UI (only inside a flow run)."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is None:
        return
    key = f"monitor-{report.model_name}".lower().replace("_", "-")
    create_markdown_artifact(
        summary_markdown(report), key=key, description="driftloop monitor summary"
    )
    table = drift_table(report)
    if table:
        create_table_artifact(table, key=f"{key}-drift", description="per-feature drift")
    performance = performance_table(report)
    if performance:
        create_table_artifact(
            performance, key=f"{key}-performance",
            description="estimated vs realized performance per window",
        )  # fmt: skip


# --- the HTML page --------------------------------------------------------------------------

_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
    "text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}"
    ".drift{background:#fde2e2}.ok{background:#e6f4e6}.warn{background:#fff4d6}"
)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def _table(headers: list[str], rows: list[list[Any]], classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        f'<tr class="{(classes or [""] * len(rows))[i]}">'
        + "".join(f"<td>{_fmt(v)}</td>" for v in row)
        + "</tr>"
        for i, row in enumerate(rows)
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def render_report_html(report: dict[str, Any]) -> str:
    """A self-contained HTML page from the monitor report's JSON (no CDN, works offline).

    Column statistics come from the whylogs profiles (``report["profiles"]``); drift rows from
    the drift statistics. whylogs' own viz pages load scripts from a CDN, hence this page.
    """
    drift = report.get("drift") or {}
    decision = report.get("decision") or {}
    feats = drift.get("features", [])
    drifted = [f["feature"] for f in feats if f.get("drifted")]
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>driftloop monitor "
        f"{_fmt(report.get('run_at'))}</title><style>{_CSS}</style></head><body>",
        f"<h1>Monitor report: {_fmt(report.get('model_name'))}</h1>",
        f"<p>Champion <b>{_fmt(report.get('champion_tag'))}</b>, window "
        f"{_fmt(report.get('window', {}).get('since'))} to "
        f"{_fmt(report.get('window', {}).get('until'))} "
        f"({_fmt(report.get('window', {}).get('rows'))} rows).</p>",
        f"<h2>Decision: {_fmt(decision.get('action'))}</h2><p>{_fmt(decision.get('reason'))}</p>",
        f"<p>Drift score {_fmt(drift.get('score'))} (threshold "
        f"{_fmt(drift.get('threshold'))}, method: {_fmt(drift.get('mode'))}).</p>",
        "<h2>Drifted features</h2>",
        "<ul id='drifted-features'>"
        + "".join(f"<li>{html.escape(f)}</li>" for f in drifted)
        + "</ul>"
        if drifted
        else "<p id='drifted-features'>No feature drifted.</p>",
        "<h2>Per-feature drift</h2>",
        _table(
            [
                "feature",
                "kind",
                "method",
                "statistic",
                "p-value",
                "p (BH)",
                "JS",
                "Wasserstein",
                "PSI",
                "Hellinger",
                "importance",
                "drifted",
            ],  # fmt: skip
            [
                [
                    f["feature"],
                    f["kind"],
                    f["method"],
                    f.get("statistic"),
                    f.get("p_value"),
                    f.get("p_adjusted"),
                    f.get("jensen_shannon"),
                    f.get("wasserstein"),
                    f.get("psi"),
                    f.get("hellinger"),
                    f.get("importance"),
                    "DRIFT" if f.get("drifted") else "ok",
                ]  # fmt: skip
                for f in feats
            ],
            ["drift" if f.get("drifted") else "ok" for f in feats],
        ),
    ]
    pred = drift.get("prediction")
    if pred:
        parts += ["<h2>Prediction drift (score)</h2>", _table(list(pred), [list(pred.values())])]
    for section in ("quality", "performance", "health"):
        body = report.get(section)
        if body:
            flat = {k: v for k, v in body.items() if not isinstance(v, dict | list)}
            parts += [f"<h2>{section.title()}</h2>", _table(list(flat), [list(flat.values())])]
            issues = body.get("issues") or []
            if issues:
                items = "".join(f"<li>{html.escape(str(i))}</li>" for i in issues)
                parts.append(f"<ul>{items}</ul>")
    profiles = report.get("profiles") or {}
    ref, cur = profiles.get("reference", {}), profiles.get("current", {})
    if ref or cur:
        stats = ["n", "null", "mean", "stddev", "median", "min", "max"]
        rows = []
        for col in sorted(set(ref) | set(cur)):
            for side, prof in (("reference", ref), ("current", cur)):
                c = prof.get(col, {})
                top = ", ".join(f"{k}:{v}" for k, v in (c.get("top") or {}).items())
                rows.append([col, side, *[c.get(s) for s in stats], top])
        parts += [
            "<h2>whylogs profiles (reference vs current)</h2>",
            _table(["column", "profile", *stats, "top values"], rows),
        ]
    parts.append("</body></html>")
    return "".join(parts)
