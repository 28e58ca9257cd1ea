"""What a monitor run decides and announces: the drift decision (unless data quality blocks
it), the performance alarm under the same cooldown rule, and the events with their evidence."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from tasks.drift import DriftConfig, DriftDecision, cooldown_end, decide
from tasks.monitoring.state import update_state
from tasks.settings import Settings

if TYPE_CHECKING:
    from tasks.monitoring.evidence import Evidence
    from tasks.monitoring.findings import WindowFindings
    from tasks.monitoring.report import MonitorReport, SentEvent
    from tasks.monitoring.window import Champion

_EVIDENCE_KEYS = ("feature", "kind", "method", "statistic", "p_value", "p_adjusted", "threshold",
                  "jensen_shannon", "wasserstein", "psi", "hellinger", "importance")  # fmt: skip


class Emitter(Protocol):
    """What the monitor needs of ``tasks.events`` (a test passes a fake with the same API)."""

    def emit_drift_detected(self, model_name: str, evidence: dict[str, Any]) -> str | None: ...
    def emit_drift_reported(self, model_name: str, evidence: dict[str, Any]) -> str | None: ...
    def emit_performance_degraded(
        self, model_name: str, evidence: dict[str, Any]
    ) -> str | None: ...
    def emit_data_quality_failed(self, model_name: str, evidence: dict[str, Any]) -> str | None: ...


@dataclass(frozen=True)
class Due:
    """The window's decision and which events it makes due."""

    decision: DriftDecision
    drift_fire: bool
    performance_fire: bool
    drift_retrains: bool = True  # the drift event asks for a retrain (policy)
    retrain_reasons: tuple[str, ...] = ()  # the evidence of loss behind a performance event


def decide_window(
    findings: WindowFindings, config: DriftConfig, now: datetime, settings: Settings | None = None
) -> Due:
    """Run the drift decision (unless data quality blocks it), persist the state (with the
    window's estimate), and say which events are due.

    A window that fails data quality never advances the drift state: retraining on broken
    inputs would learn the breakage, so it alerts (data-quality event) instead. The policy's
    ``verdict`` says whether a drift fire asks for a retrain and whether the evidence of loss
    does (a performance event, unless the drift event already asks).
    """
    champion, drift, quality = findings.champion, findings.drift, findings.quality
    verdict = findings.verdict
    with update_state(champion.name, settings) as state:
        if not quality.ok or drift is None:
            decision = DriftDecision(
                "blocked", False, state.consecutive, config.hysteresis_windows,
                "data quality failed: " + "; ".join(quality.issues),
            )  # fmt: skip
        else:
            decision, new = decide(
                drift, state=state, config=config, now=now, champion_tag=champion.tag,
                last_retrain_at=champion.last_retrain_at,
            )  # fmt: skip
            for name in type(new).model_fields:
                setattr(state, name, getattr(new, name))
        # one retrain-triggering event per run: when drift fires and asks for a retrain,
        # degraded performance travels in its evidence (two events would mean two retrains)
        # broken inputs make broken scores: their estimate asks for no retrain. With a
        # verdict, only its statistically controlled evidence retrains; the fixed-margin
        # performance check (no interval, no correction) is then reported, not acted on
        degraded = findings.performance.degraded
        wants = (verdict.retrain and quality.ok) if verdict is not None else degraded
        drift_retrains = decision.fire and (verdict is None or verdict.retrain
                                            or verdict.input_drift_retrains)  # fmt: skip
        end = cooldown_end(state.last_performance_fired_at, state.last_retrain_requested_at,
                           champion.last_retrain_at, minutes=config.cooldown_minutes)  # fmt: skip
        perf_fire = wants and not drift_retrains and (end is None or now >= end)
        if perf_fire:
            state.last_performance_fired_at = now
        if perf_fire or drift_retrains:
            state.last_retrain_requested_at = now
        _store_estimate(state, champion, findings.evidence, now)
    reasons = tuple(verdict.reasons) if verdict is not None else ()
    return Due(decision, decision.fire, perf_fire, drift_retrains, reasons)


_STORED_ESTIMATES = 500  # windows whose estimate the state keeps


def _store_estimate(state, champion: Champion, evidence: Evidence | None, now: datetime) -> None:
    from tasks.monitoring.state import StoredEstimate

    if evidence is None or evidence.estimate is None:
        return
    start, end = evidence.since, evidence.until
    entry = StoredEstimate(
        champion_tag=champion.tag, start=start, end=end, rows=evidence.estimate.rows,
        metrics=evidence.estimate.metrics,
    )  # fmt: skip
    kept = [e for e in state.estimates if (e.champion_tag, e.start) != (champion.tag, start)]
    state.estimates = [*kept[-(_STORED_ESTIMATES - 1) :], entry]


def evidence(report: MonitorReport, reason: str, retrain: bool = True) -> dict[str, Any]:
    """The event payload: enough to audit a retrain without opening logs (JSON types).
    ``retrain`` False: the event reports (input drift judged harmless); the retrain flow
    completes without training."""
    doc = report.to_json()
    drift = doc["drift"] or {}
    drifted = [{k: f.get(k) for k in _EVIDENCE_KEYS} for f in drift.get("features", [])
               if f.get("drifted")]  # fmt: skip
    return {
        "reason": reason,
        "model_name": doc["model_name"],
        "champion_tag": doc["champion_tag"],
        "score": drift.get("score"),
        "threshold": drift.get("threshold"),
        "mode": drift.get("mode"),
        "drifted_features": drifted,
        "prediction_drift": drift.get("prediction"),
        "decision": doc["decision"],
        "window": doc["window"],
        "quality_issues": doc["quality"]["issues"],
        "performance": doc["performance"],
        "reference_profile": doc["reference_profile"],
        "current_profile": doc["current_profile"],
        "report_html": str(report.paths.html),
        "report_json": str(report.paths.json),
        "run_at": doc["run_at"],
        "retrain": retrain,
        "late_labels": late_labels(doc),
        "estimate": (doc.get("evidence") or {}).get("estimate"),
        "concept_drift": (doc.get("evidence") or {}).get("concept_drift"),
        "multivariate_drift": (doc.get("evidence") or {}).get("multivariate"),
        "verdict": doc.get("verdict"),
    }


def late_labels(doc: dict[str, Any]) -> dict[str, Any]:
    """Which windows have labels, how many, and their realized metrics with intervals."""
    found = doc.get("evidence") or {}
    keys = ("start", "end", "predictions", "labels", "coverage", "lag", "realized")
    windows = [{k: w.get(k) for k in keys} for w in found.get("windows", []) if w.get("labels")]
    return {"windows": windows, "since_last_run": found.get("labels_since_last_run")}


def default_emitter() -> Emitter:
    """``tasks.events``, after re-sending what an earlier run could not deliver."""
    from tasks import events

    events.flush_outbox()
    return events  # type: ignore[return-value]


def emit_events(report: MonitorReport, due: Due, emitter: Emitter | None = None) -> MonitorReport:
    """Emit what is due through ``emitter`` (default: :func:`default_emitter`); returns the
    report with the events it sent."""
    from tasks.monitoring.report import SentEvent

    quality, sent = report.quality, []
    emitter = emitter or default_emitter()
    if not quality.ok:
        kind = "schema break" if quality.schema_break else "data quality"
        why = f"{kind}: " + "; ".join(quality.issues)
        sent.append(("data_quality_failed", emitter.emit_data_quality_failed, why, False))
    if due.drift_fire and report.drift is not None:
        why = f"drift score {report.drift.score:.3f} >= {report.drift.threshold}"
        if due.drift_retrains:
            sent.append(("drift_detected", emitter.emit_drift_detected, why, True))
        else:  # a separate event: the retrain deployment's trigger does not listen to it
            why += " (reported: no evidence of loss, the policy does not retrain on it)"
            sent.append(("drift_reported", emitter.emit_drift_reported, why, False))
    if due.performance_fire:
        reasons = list(due.retrain_reasons)
        check = report.performance.reason if report.performance.degraded else None
        if check and not any(check in r for r in reasons):  # once: a reason may quote it
            reasons.append(check)
        why = "; ".join(reasons)
        sent.append(("performance_degraded", emitter.emit_performance_degraded, why, True))
    done: list[SentEvent] = [
        SentEvent(event=event, id=fn(report.model_name, evidence(report, why, again)), reason=why)
        for event, fn, why, again in sent
    ]
    return report.model_copy(update={"events": [*report.events, *done]})
