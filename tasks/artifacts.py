"""What each flow run leaves in the Prefect UI: markdown, tables and links under stable keys
(``<flow>-<model>[-<part>]``), so the UI's artifact page shows each one's history.

Builders are pure (typed results in, :class:`Artifact` list out); each flow calls one
``publish_*``, which no-ops outside a flow run. Every artifact names the model tag and the data
version it concerns. This is the only module that imports ``prefect.artifacts``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from tasks.gate import GateDecision
    from tasks.monitoring.report import MonitorReport
    from tasks.registry import LoadedModel
    from tasks.settings import Settings

Kind = Literal["markdown", "table", "link"]


@dataclass(frozen=True)
class Artifact:
    """One Prefect artifact: ``body`` is markdown, a list of rows, or a link target."""

    key: str
    kind: Kind
    description: str
    body: str | list[dict[str, Any]]
    link_text: str | None = None


def artifact_key(*parts: str) -> str:
    """A Prefect artifact key: lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")


def file_link(path: Path | str) -> str:
    """A ``file://`` URI for a report on disk (the UI shows it as a link)."""
    return Path(path).resolve().as_uri()


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def lineage(model_tag: str | None, data_version: str | None) -> str:
    """The line every artifact carries: which model and which data."""
    return f"Model `{model_tag or '-'}` · data version `{data_version or '-'}`"


def md_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A markdown table from rows with the same keys ('' for no rows)."""
    if not rows:
        return ""
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_fmt(r.get(k)) for k in head) + " |" for r in rows]
    return "\n".join(lines)


def publish(artifacts: Sequence[Artifact]) -> list[str]:
    """Create the artifacts in the current flow run; outside a flow run nothing (returns [])."""
    from prefect.artifacts import (
        create_link_artifact,
        create_markdown_artifact,
        create_table_artifact,
    )
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is None:
        return []
    for a in artifacts:
        if a.kind == "markdown":
            create_markdown_artifact(str(a.body), key=a.key, description=a.description)
        elif a.kind == "table":
            create_table_artifact(list(a.body), key=a.key, description=a.description)
        else:
            create_link_artifact(
                str(a.body), link_text=a.link_text, key=a.key, description=a.description
            )
    return [a.key for a in artifacts]


def _data_version(model_tag: str | None, settings: Settings | None) -> str | None:
    from tasks.registry import model_metadata

    if not model_tag:
        return None
    try:
        return model_metadata(model_tag, settings).get("data_version")
    except Exception:  # a missing model must not fail the run that reports on it
        return None


# --- monitor ---------------------------------------------------------------------------------


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
            f"- Performance: {p.labelled} labels, AUC {p.auc} vs test {p.champion_auc}"
            f" ({p.reason})",
            f"- Health: {h.rate_per_min:.1f} req/min, p95 {h.latency_p95_ms} ms, "
            f"error rate {h.error_rate}",
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
    html = report.paths.html
    out.append(Artifact(f"{key}-report", "link",
                        f"HTML report ({lineage(report.champion_tag, data_version)})",
                        file_link(html), link_text=html.name))  # fmt: skip
    return out


def publish_monitor(report: MonitorReport, settings: Settings | None = None) -> list[str]:
    """The monitor run's artifacts (only inside a flow run)."""
    return publish(monitor_artifacts(report, _data_version(report.champion_tag, settings)))


# --- retrain ---------------------------------------------------------------------------------


class TriggerLike(Protocol):
    """What the retrain's artifacts need of ``flows.retrain.RetrainTrigger``."""

    reason: str
    event: str | None
    event_id: str | None
    evidence: dict[str, Any]


def gate_rows(decision: GateDecision) -> list[dict[str, Any]]:
    """Per-slice table: both models' slice metric, the loss and whether it breaks the bound."""
    bound = decision.max_slice_regression
    return [{"column": s.column, "value": s.value, "rows": s.n, "champion": s.champion,
             "challenger": s.challenger, "loss": s.loss, "regression": s.loss > bound}
            for s in decision.slices]  # fmt: skip


def _evidence_lines(evidence: Mapping[str, Any], most: int = 12) -> list[str]:
    """The trigger's evidence: its plain values and the drifted features' names."""
    out = []
    for k, v in evidence.items():
        if k == "drifted_features" and isinstance(v, list):
            v = ", ".join(f.get("feature", "?") if isinstance(f, dict) else str(f) for f in v)
        if isinstance(v, str | int | float | bool) and v != "":
            out.append(f"  - {k}: {_fmt(v)}")
    return out[:most]


def retrain_markdown(
    decision: GateDecision,
    trigger: TriggerLike,
    outcome: Mapping[str, Any],
    data_version: str | None,
) -> str:
    """Trigger and its evidence, the gate's decision with its interval, champion before/after."""
    low = decision.improvement_low
    interval = (f"{decision.confidence:.0%} paired-bootstrap lower bound {_fmt(low)}"
                if low is not None else "no bootstrap interval")  # fmt: skip
    verdict = "PROMOTED" if decision.promote else "REJECTED"
    lines = [
        f"# Retrain: challenger {verdict}",
        lineage(decision.challenger_tag, outcome.get("challenger_data_version")),
        f"Champion before: `{decision.champion_tag}` (data version `{data_version or '-'}`)"
        f" · after: `{outcome.get('champion_after')}`",
        "",
        f"**Trigger**: {trigger.reason} (event `{trigger.event or '-'}`, "
        f"id `{trigger.event_id or '-'}`)",
        *_evidence_lines(trigger.evidence),
        "",
        f"**Gate**: {decision.reason}",
        f"- {decision.metric}: champion {_fmt(decision.champion_score)} · challenger "
        f"{_fmt(decision.challenger_score)} on {decision.n_eval} held-out rows",
        f"- improvement {_fmt(decision.improvement)} (margin {decision.margin}); {interval}",
        f"- slices: {len(decision.slices)} compared, {len(decision.slice_regressions)} beyond "
        f"the bound {decision.max_slice_regression}",
        f"- data: {outcome.get('strategy')}, {outcome.get('n_reference')} reference + "
        f"{outcome.get('n_feedback')} feedback rows, holdout {outcome.get('n_holdout')}",
    ]
    table = md_table(gate_rows(decision))
    return "\n".join(lines + (["", table] if table else []))


def retrain_artifacts(
    decision: GateDecision,
    trigger: TriggerLike,
    outcome: Mapping[str, Any],
    data_version: str | None = None,
) -> list[Artifact]:
    """Summary (markdown) and the gate's per-slice table."""
    name = (decision.champion_tag or "model").split(":")[0]
    key = artifact_key("retrain", name)
    out = [Artifact(key, "markdown", "retrain: trigger, gate decision, champion before/after",
                    retrain_markdown(decision, trigger, outcome, data_version))]  # fmt: skip
    rows = gate_rows(decision)
    if rows:
        desc = f"gate per-slice {decision.metric} ({lineage(decision.challenger_tag, None)})"
        out.append(Artifact(f"{key}-slices", "table", desc, rows))
    return out


def publish_retrain(
    *,
    decision: GateDecision,
    trigger: TriggerLike,
    outcome: Mapping[str, Any],
    champion: LoadedModel,
) -> list[str]:
    """The retrain run's artifacts (only inside a flow run)."""
    version = champion.metadata.get("data_version")
    return publish(retrain_artifacts(decision, trigger, outcome, version))
