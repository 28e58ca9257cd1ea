"""The monitor's work: the window, its data quality, live performance, health, the report.

Plain functions composed by ``flows/monitor.py``. The window comes from the prediction log
(``schemas.records.PredictionRecord`` columns followed by the dataset's input columns); labels
from the feedback log. Drift statistics live in ``tasks.drift``; whylogs in ``tasks.profiling``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from pydantic import BaseModel, Field

from schemas.base import DatasetSpec
from tasks.io import atomic_write
from tasks.settings import Settings, get_settings


class QualityConfig(BaseModel):
    max_missing_share: float = Field(0.2, ge=0, le=1, description="per input column")
    max_violation_share: float = Field(0.05, ge=0, le=1, description="outside the domain")
    max_rejected_share: float = Field(
        0.05, ge=0, le=1, description="requests the service rejected (4xx) / all requests"
    )


class PerformanceConfig(BaseModel):
    min_labels: int = Field(100, ge=1, description="fewer labels: no performance verdict")
    max_auc_drop: float = Field(0.05, ge=0, description="below the champion's test AUC")
    max_recall_drop: float = Field(0.10, ge=0, description="below the champion's test recall")


class HealthConfig(BaseModel):
    max_error_rate: float = Field(0.05, ge=0, le=1)
    max_p95_latency_ms: float = Field(250.0, gt=0)


@dataclass(frozen=True)
class Window:
    since: datetime
    until: datetime

    @property
    def minutes(self) -> float:
        return (self.until - self.since).total_seconds() / 60


@dataclass(frozen=True)
class Champion:
    """What the monitor needs of the champion: tag, test metrics, importance, threshold."""

    name: str
    tag: str
    metrics: dict[str, Any]
    importance: dict[str, float] | None
    threshold: float
    last_retrain_at: datetime | None


@dataclass
class Quality:
    """Data quality of the window. A schema break means drift cannot even be computed."""

    rows: int
    ok: bool = True
    schema_break: bool = False
    missing_columns: list[str] = field(default_factory=list)
    type_mismatches: dict[str, str] = field(default_factory=dict)
    missing_share: dict[str, float] = field(default_factory=dict)
    violation_share: dict[str, float] = field(default_factory=dict)
    serving_rejected: float | None = None  # 4xx answers of the service in the window
    serving_validation_failures: float | None = None  # rejected fields (contract rules)
    issues: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Performance:
    labelled: int
    auc: float | None
    precision: float | None
    recall: float | None
    champion_auc: float | None
    champion_precision: float | None
    champion_recall: float | None
    degraded: bool
    reason: str


@dataclass(frozen=True)
class Health:
    requests: int
    rate_per_min: float
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    error_rate: float | None
    error_source: str
    ok: bool
    issues: list[str]


@dataclass(frozen=True)
class ReportPaths:
    json: Path
    html: Path


# --- inputs -------------------------------------------------------------------------------


def window_bounds(minutes: float, until: datetime | None = None) -> Window:
    """The window ``[until - minutes, until)``; ``until`` defaults to now (UTC)."""
    until = (until or datetime.now(UTC)).astimezone(UTC)
    return Window(until - timedelta(minutes=minutes), until)


def load_champion(name: str, settings: Settings | None = None) -> Champion:
    """The champion's tag, test metrics, feature importance (None if not stored) and threshold."""
    from tasks.registry import model_metadata, read_index, resolve

    tag = resolve(f"{name}:champion", settings)
    meta = model_metadata(tag, settings)
    metrics = meta.get("metrics") or {}
    metrics = metrics.get("test", metrics) if isinstance(metrics, dict) else {}
    history = read_index(settings).get(name, {}).get("history", [])
    changes = [h["time"] for h in history if h.get("alias") == "champion" and h.get("from")]
    last = datetime.fromisoformat(max(changes)) if changes else None
    return Champion(name, tag, metrics, _importance(meta), float(meta.get("threshold", 0.5)), last)


def _importance(meta: dict[str, Any]) -> dict[str, float] | None:
    raw = meta.get("feature_importance") or meta.get("importance")
    if isinstance(raw, dict) and isinstance(raw.get("gain"), dict):
        raw = raw["gain"]
    if isinstance(raw, list) and all(isinstance(r, list | tuple) and len(r) == 2 for r in raw):
        raw = dict(raw)
    if not isinstance(raw, dict):
        return None
    try:
        return {str(k): float(v) for k, v in raw.items()}
    except (TypeError, ValueError):
        return None


def load_window(window: Window, settings: Settings | None = None) -> pl.DataFrame:
    """Prediction-log rows with ``since <= ts < until``.

    A lazy scan with the time filter pushed down (row groups outside the window are skipped,
    nothing is sorted): on a 1M-row window it peaks at a third of the memory of reading the
    whole log. Files that disagree on their schema (a schema break) make the scan fail; then
    ``tasks.predlog.load_predictions`` aligns them column by column.
    """
    settings = settings or get_settings()
    files = [p for p in sorted(settings.predictions_dir.glob("*.parquet"))]
    files = [p for p in files if not p.name.startswith(".")]  # temp files of atomic writes
    in_window = (pl.col("ts") >= window.since) & (pl.col("ts") < window.until)
    if files:
        try:
            return pl.scan_parquet(files).filter(in_window).collect()
        except pl.exceptions.PolarsError:
            pass
    from tasks.predlog import load_predictions

    return load_predictions(window.since, window.until, settings=settings)


def load_labels(settings: Settings | None = None) -> pl.DataFrame:
    """Every feedback label received (``FeedbackRecord``)."""
    from tasks.predlog import load_feedback

    return load_feedback(settings=settings)


# --- the service's own counters ------------------------------------------------------------

_PROBES = ("/metrics", "/livez", "/readyz", "/healthz")


@dataclass(frozen=True)
class ServingCounters:
    """Request counts from the service's Prometheus ``/metrics`` (cumulative or a delta)."""

    requests: float = 0.0
    client_errors: float = 0.0
    server_errors: float = 0.0
    validation_failures: float = 0.0

    def minus(self, before: ServingCounters) -> ServingCounters:
        """The counts since ``before``; a counter that went down (restart) counts from 0."""
        fields = ("requests", "client_errors", "server_errors", "validation_failures")
        now, then = [getattr(self, f) for f in fields], [getattr(before, f) for f in fields]
        if any(a < b for a, b in zip(now, then, strict=True)):
            return self
        return ServingCounters(*(a - b for a, b in zip(now, then, strict=True)))


def parse_serving_metrics(text: str) -> ServingCounters:
    """BentoML's ``*_request_total`` (by status) and driftloop's validation-failure counter."""
    from prometheus_client.parser import text_string_to_metric_families

    totals = {"requests": 0.0, "client_errors": 0.0, "server_errors": 0.0, "failures": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "driftloop_validation_failures_total":
                totals["failures"] += sample.value
            code = str(sample.labels.get("http_response_code", ""))
            if not (sample.name.endswith("_request_total") and code):
                continue
            if sample.labels.get("endpoint") in _PROBES:
                continue
            totals["requests"] += sample.value
            key = {"4": "client_errors", "5": "server_errors"}.get(code[:1])
            if key:
                totals[key] += sample.value
    return ServingCounters(
        totals["requests"], totals["client_errors"], totals["server_errors"], totals["failures"]
    )


def serving_counters(
    model_name: str, url: str | None, settings: Settings | None = None, timeout_s: float = 3.0
) -> ServingCounters | None:
    """The service's counts since the previous monitor run (None without a URL or answer).

    The cumulative counters of the last scrape are kept in the monitor state.
    """
    if not url:
        return None
    import httpx

    from tasks.drift import load_state, save_state

    try:
        answer = httpx.get(url.rstrip("/") + "/metrics", timeout=timeout_s)
        answer.raise_for_status()
        now = parse_serving_metrics(answer.text)
    except (httpx.HTTPError, ValueError):
        return None
    state = load_state(model_name, settings)
    before = ServingCounters(**state.get("serving_counters", {}))
    save_state(model_name, {**state, "serving_counters": asdict(now)}, settings)
    return now.minus(before)


# --- data quality ---------------------------------------------------------------------------


def check_quality(
    window: pl.DataFrame,
    dataset: DatasetSpec,
    config: QualityConfig,
    serving: ServingCounters | None = None,
) -> Quality:
    """Missing share, type and domain violations of the window's input columns.

    A missing input column or one of the wrong kind (text where the contract says number, or
    the other way round) is a schema break.
    """
    q = Quality(rows=window.height)
    if serving is not None:
        q.serving_rejected = serving.client_errors
        q.serving_validation_failures = serving.validation_failures
    max_missing_share, max_violation_share = config.max_missing_share, config.max_violation_share
    inputs = [c for c in dataset.column_names if c != dataset.target]
    # an empty window (no traffic, or not flushed yet) has no columns to judge: not a break
    present = window.columns if window.height else [*inputs, "ts", "score"]
    q.missing_columns = [c for c in [*inputs, "ts", "score"] if c not in present]
    for name in inputs:
        if name not in window.columns:
            continue
        info, dtype = dataset.columns[name], window.schema[name]
        if info.is_numeric != dtype.is_numeric() and dtype != pl.Null:
            q.type_mismatches[name] = f"{dtype} (contract: {info.dtype})"
            continue
        col = window[name]
        missing = col.null_count() + (col.is_nan().sum() if dtype.is_float() else 0)
        q.missing_share[name] = missing / window.height if window.height else 0.0
        if window.height:
            q.violation_share[name] = _violations(col, info) / window.height
    q.schema_break = bool(q.missing_columns or q.type_mismatches)
    q.issues = [f"missing column {c}" for c in q.missing_columns]
    q.issues += [f"{c}: type {t}" for c, t in q.type_mismatches.items()]
    q.issues += [
        f"{c}: {s:.1%} missing > {max_missing_share:.1%}"
        for c, s in q.missing_share.items()
        if s > max_missing_share
    ]
    q.issues += [
        f"{c}: {s:.1%} outside the contract's domain > {max_violation_share:.1%}"
        for c, s in q.violation_share.items()
        if s > max_violation_share
    ]
    if serving is not None and serving.requests:
        share = serving.client_errors / serving.requests
        if share > config.max_rejected_share:
            q.issues.append(
                f"serving rejected {share:.1%} of requests > {config.max_rejected_share:.1%} "
                f"({serving.validation_failures:.0f} contract violations)"
            )
    q.ok = not q.issues
    return q


def _violations(col: pl.Series, info: Any) -> int:
    if info.is_categorical:
        return int((~col.cast(pl.String).is_in(list(info.categories)) & col.is_not_null()).sum())
    if not col.dtype.is_numeric():
        return 0
    bad = pl.Series([False] * len(col))
    if info.min_value is not None:
        bad = bad | (col < info.min_value).fill_null(False)
    if info.max_value is not None:
        bad = bad | (col > info.max_value).fill_null(False)
    return int(bad.sum())


# --- performance and health ------------------------------------------------------------------


def compute_performance(
    window: pl.DataFrame,
    labels: pl.DataFrame,
    champion: Champion,
    config: PerformanceConfig,
) -> Performance:
    """AUC, precision and recall on the window's labelled predictions vs the champion's test."""
    min_labels, max_auc_drop, max_recall_drop = (
        config.min_labels,
        config.max_auc_drop,
        config.max_recall_drop,
    )
    joined = _join_labels(window, labels)
    y = joined["label"].to_numpy().astype(float) if joined.height else np.array([])
    s = joined["score"].to_numpy().astype(float) if joined.height else np.array([])
    pred = s >= champion.threshold
    auc = precision = recall = None
    if len(y) and 0 < y.sum() < len(y):
        from tasks.metrics import roc_auc

        auc = roc_auc(y, s)
    if pred.sum():
        precision = float(y[pred].mean())
    if y.sum():
        recall = float(pred[y == 1].mean())
    ref = {k: _metric(champion.metrics, k) for k in ("roc_auc", "precision", "recall")}
    reasons = []
    if len(y) >= min_labels:
        if auc is not None and ref["roc_auc"] is not None and auc < ref["roc_auc"] - max_auc_drop:
            reasons.append(f"AUC {auc:.3f} < champion test {ref['roc_auc']:.3f} - {max_auc_drop}")
        if (
            recall is not None
            and ref["recall"] is not None
            and recall < ref["recall"] - max_recall_drop
        ):
            reasons.append(f"recall {recall:.3f} < test {ref['recall']:.3f} - {max_recall_drop}")
    why = "; ".join(reasons) or (
        f"{len(y)} labels < min_labels {min_labels}" if len(y) < min_labels else "within bounds"
    )
    return Performance(len(y), auc, precision, recall, ref["roc_auc"], ref["precision"],
                       ref["recall"], bool(reasons), why)  # fmt: skip


def _metric(metrics: dict[str, Any], key: str) -> float | None:
    value = metrics.get(key, metrics.get("auc") if key == "roc_auc" else None)
    return float(value) if isinstance(value, int | float) else None


def _join_labels(window: pl.DataFrame, labels: pl.DataFrame) -> pl.DataFrame:
    """Window predictions with their label (``tasks.predlog.join_feedback`` semantics)."""
    from tasks.predlog import join_feedback

    needed = {"request_id", "entity_id", "ts", "score"}
    if not labels.height or not needed <= set(window.columns):
        return pl.DataFrame(schema={"score": pl.Float64, "label": pl.Float64})
    joined = join_feedback(window.select(sorted(needed)), labels)
    return joined.select("score", pl.col("label").cast(pl.Float64))


def compute_health(
    window: pl.DataFrame,
    bounds: Window,
    config: HealthConfig,
    serving: ServingCounters | None = None,
) -> Health:
    """Request rate, latency percentiles and error rate of the window."""
    max_error_rate, max_p95_latency_ms = config.max_error_rate, config.max_p95_latency_ms
    n = window.height
    lat = window["latency_ms"].drop_nulls() if "latency_ms" in window.columns else pl.Series([])
    pct = {p: (float(lat.quantile(p / 100)) if len(lat) else None) for p in (50, 95, 99)}
    if serving is not None and serving.requests:
        err, source = serving.server_errors / serving.requests, "service /metrics (5xx share)"
    elif "score" in window.columns and n:
        bad = window["score"].is_null().sum() + window["score"].cast(pl.Float64).is_nan().sum()
        err, source = bad / n, "prediction log rows without a score"
    else:
        err, source = None, "not available"
    issues = []
    if err is not None and err > max_error_rate:
        issues.append(f"error rate {err:.2%} > {max_error_rate:.2%}")
    if pct[95] is not None and pct[95] > max_p95_latency_ms:
        issues.append(f"p95 latency {pct[95]:.0f} ms > {max_p95_latency_ms:.0f} ms")
    rate = n / bounds.minutes if bounds.minutes else 0.0
    return Health(n, rate, pct[50], pct[95], pct[99], err, source, not issues, issues)


# --- report and evidence -----------------------------------------------------------------------


def monitor_frames(window: pl.DataFrame, dataset: DatasetSpec, score_column: str) -> pl.DataFrame:
    """The window's feature columns plus its score renamed as in the reference profile."""
    cols = [c for c in dataset.feature_columns if c in window.columns]
    score = [pl.col("score").alias(score_column)] if "score" in window.columns else []
    return window.select([*cols, *score])


def run_stamp(now: datetime) -> str:
    """A file-safe, sortable UTC time stamp for this run's report and profile files."""
    return now.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def build_report(**parts: Any) -> dict[str, Any]:
    """The monitor run's JSON: every part as plain JSON types (dataclasses flattened)."""

    def plain(v: Any) -> Any:
        if hasattr(v, "to_dict"):
            return plain(v.to_dict())
        if hasattr(v, "__dataclass_fields__"):
            return plain(asdict(v))
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [plain(x) for x in v]
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, datetime):
            return v.isoformat()
        if isinstance(v, float) and not np.isfinite(v):
            return None
        return v.item() if hasattr(v, "item") else v

    return plain(parts)


def write_report(
    report: dict[str, Any], stamp: str, settings: Settings | None = None
) -> ReportPaths:
    """``reports/monitor/<stamp>.json`` and the HTML page rendered from it."""
    from tasks.profiling import render_report_html

    folder = (settings or get_settings()).reports_dir / "monitor"
    paths = ReportPaths(folder / f"{stamp}.json", folder / f"{stamp}.html")
    report["report"] = {"json": str(paths.json), "html": str(paths.html)}
    atomic_write(paths.json, json.dumps(report, indent=2, allow_nan=False).encode())
    atomic_write(paths.html, render_report_html(report).encode())
    return paths


def evidence(report: dict[str, Any], reason: str) -> dict[str, Any]:
    """The event payload: enough to audit a retrain without opening logs."""
    drift = report.get("drift") or {}
    drifted = [
        {
            k: f.get(k)
            for k in (
                "feature",
                "kind",
                "method",
                "statistic",
                "p_value",
                "p_adjusted",
                "threshold",
                "jensen_shannon",
                "wasserstein",
                "psi",
                "hellinger",
                "importance",
            )
        }  # fmt: skip
        for f in drift.get("features", [])
        if f.get("drifted")
    ]
    return {
        "reason": reason,
        "model_name": report.get("model_name"),
        "champion_tag": report.get("champion_tag"),
        "score": drift.get("score"),
        "threshold": drift.get("threshold"),
        "mode": drift.get("mode"),
        "drifted_features": drifted,
        "prediction_drift": drift.get("prediction"),
        "decision": report.get("decision"),
        "window": report.get("window"),
        "quality_issues": (report.get("quality") or {}).get("issues", []),
        "performance": report.get("performance"),
        "reference_profile": report.get("reference_profile"),
        "current_profile": report.get("current_profile"),
        "report_html": report["report"]["html"],
        "report_json": report["report"]["json"],
        "run_at": report.get("run_at"),
    }


# --- decision wiring, events, summaries ------------------------------------------------------


def decide_window(
    drift: Any,
    quality: Quality,
    performance: Performance,
    champion: Champion,
    config: Any,
    now: datetime,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Run the drift decision (unless data quality blocks it), persist the state, and say
    which events are due: ``{"decision", "drift_fire", "performance_fire"}``.

    A window that fails data quality never advances the drift state: retraining on broken
    inputs would learn the breakage, so it alerts (data-quality event) instead.
    """
    from tasks.drift import DriftDecision, decide, load_state, save_state

    state = load_state(champion.name, settings)
    if not quality.ok:
        decision = DriftDecision(
            "blocked", False, int(state.get("consecutive", 0)), config.hysteresis_windows,
            "data quality failed: " + "; ".join(quality.issues),
        )  # fmt: skip
    else:
        decision, state = decide(
            drifting=drift.drifting, window_rows=drift.window_rows, state=state, config=config,
            now=now, champion_tag=champion.tag, last_retrain_at=champion.last_retrain_at,
            score=drift.score,
        )  # fmt: skip
    # one retrain-triggering event per run: when drift fires, degraded performance travels in
    # its evidence instead of a second event (two events would mean two triggered retrains)
    perf_fire = (
        performance.degraded
        and not decision.fire
        and _cooled(state, now, config, champion.last_retrain_at)
    )
    if perf_fire:
        state["last_performance_fired_at"] = now.isoformat()
    save_state(champion.name, state, settings)
    return {"decision": decision, "drift_fire": decision.fire, "performance_fire": perf_fire}


def _cooled(state: dict[str, Any], now: datetime, config: Any, retrain: datetime | None) -> bool:
    fired = [state.get("last_performance_fired_at"), state.get("last_fired_at")]
    starts = [datetime.fromisoformat(t) for t in fired if t] + ([retrain] if retrain else [])
    return not starts or now >= max(starts) + timedelta(minutes=config.cooldown_minutes)


def emit_events(
    report: dict[str, Any], due: dict[str, Any], quality: Quality, emitter: Any
) -> list[dict[str, Any]]:
    """Emit what is due through ``emitter`` (``tasks.events`` or a fake with the same API)."""
    name = report["model_name"]
    sent = []
    if not quality.ok:
        kind = "schema break" if quality.schema_break else "data quality"
        why = f"{kind}: " + "; ".join(quality.issues)
        sent.append(("data_quality_failed", emitter.emit_data_quality_failed, why))
    if due["drift_fire"]:
        why = f"drift score {report['drift']['score']:.3f} >= {report['drift']['threshold']}"
        sent.append(("drift_detected", emitter.emit_drift_detected, why))
    if due["performance_fire"]:
        sent.append(("performance_degraded", emitter.emit_performance_degraded,
                     report["performance"]["reason"]))  # fmt: skip
    return [
        {"event": event, "id": fn(name, evidence(report, why)), "reason": why}
        for event, fn, why in sent
    ]


def summary_markdown(report: dict[str, Any]) -> str:
    """A short markdown summary for the Prefect UI."""
    d, dec = report.get("drift") or {}, report["decision"]
    q, p, h = report["quality"], report["performance"], report["health"]
    drifted = ", ".join(d.get("drifted_features", [])) or "none"
    events = ", ".join(e["event"] for e in report.get("events", [])) or "none"
    return "\n".join(
        [
            f"# Monitor: {report['model_name']} ({report['champion_tag']})",
            f"Window {report['window']['since']} to {report['window']['until']}: "
            f"**{report['window']['rows']} rows**.",
            f"- Decision: **{dec['action']}** ({dec['reason']})",
            f"- Drift score: {d.get('score', 0):.3f} / threshold {d.get('threshold')} "
            f"({d.get('mode')}); drifted: {drifted}",
            f"- Data quality: {'ok' if q['ok'] else '; '.join(q['issues'])}",
            f"- Performance: {p['labelled']} labels, AUC {p['auc']} vs test {p['champion_auc']}"
            f" ({p['reason']})",
            f"- Health: {h['rate_per_min']:.1f} req/min, p95 {h['latency_p95_ms']} ms, "
            f"error rate {h['error_rate']}",
            f"- Events: {events}",
            f"- Report: {report['report']['html']}",
        ]
    )


def drift_table(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-feature drift rows for a Prefect table artifact."""
    keys = ("feature", "kind", "method", "statistic", "p_adjusted", "importance", "drifted")
    return [{k: f.get(k) for k in keys} for f in (report.get("drift") or {}).get("features", [])]
