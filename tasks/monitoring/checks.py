"""The window's checks: data quality, live performance on labelled feedback, health."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from pydantic import BaseModel, Field

from schemas.base import DatasetSpec
from tasks.monitoring.window import champion_rows

if TYPE_CHECKING:
    from schemas.base import ColumnInfo
    from tasks.drift import DriftConfig, DriftResult
    from tasks.monitoring.serving import ServingCounters
    from tasks.monitoring.window import Champion, Window
    from tasks.profiling import Reference


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


def _violations(col: pl.Series, info: ColumnInfo) -> int:
    if info.is_categorical:  # a pl.Categorical compares with text as is (no cast: faster)
        text = col if col.dtype in (pl.String, pl.Categorical) else col.cast(pl.String)
        return int((~text.is_in(list(info.categories)) & col.is_not_null()).sum())
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
    """AUC, precision and recall on the labelled predictions the champion made in the window
    (``window.champion_rows``: not a canary challenger's) vs the champion's test."""
    window = champion_rows(window, champion.tag)
    min_labels, max_auc_drop, max_recall_drop = (
        config.min_labels,
        config.max_auc_drop,
        config.max_recall_drop,
    )
    proba = [f"proba_{c}" for c in champion.classes]
    joined = _join_labels(window, labels, proba)
    y = joined["label"].to_numpy().astype(float) if joined.height else np.array([])
    if champion.task == "regression":  # no classification rates for a regression model
        auc = precision = recall = None
        ref = dict.fromkeys(("roc_auc", "precision", "recall"))
    elif champion.classes:  # multiclass: one-vs-rest AUC and macro precision / recall
        p = joined.select(proba).to_numpy() if joined.height else np.zeros((0, len(proba)))
        auc, precision, recall = _multiclass_rates(y, p)
        ref = _multiclass_reference(champion.metrics)
    else:
        s = joined["score"].to_numpy().astype(float) if joined.height else np.array([])
        auc, precision, recall = _binary_rates(y, s, champion.threshold)
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


def _binary_rates(y: np.ndarray, s: np.ndarray, threshold: float) -> tuple[float | None, ...]:
    """ROC AUC, precision and recall at ``threshold`` of labelled binary scores."""
    pred = s >= threshold
    auc = precision = recall = None
    if len(y) and 0 < y.sum() < len(y):
        from tasks.metrics import roc_auc

        auc = roc_auc(y, s)
    if pred.sum():
        precision = float(y[pred].mean())
    if y.sum():
        recall = float(pred[y == 1].mean())
    return auc, precision, recall


def _multiclass_rates(y: np.ndarray, p: np.ndarray) -> tuple[float | None, ...]:
    """Macro one-vs-rest ROC AUC, macro precision and macro recall of labelled probabilities
    (labels are class indices, as the feedback log stores them)."""
    if not len(y):
        return None, None, None
    from tasks.metrics import multiclass_classification, roc_auc_ovr

    try:
        auc = roc_auc_ovr(y, p, "macro")
    except ValueError:  # fewer than two classes labelled yet
        auc = None
    rates = multiclass_classification(y, p.argmax(axis=1), p.shape[1])
    precision_per, recall_per = rates["precision_per_class"], rates["recall_per_class"]
    return auc, float(np.mean(precision_per)), float(np.mean(recall_per))


def _multiclass_reference(metrics: dict[str, Any]) -> dict[str, float | None]:
    precision, recall = metrics.get("precision_per_class"), metrics.get("recall_per_class")
    return {
        "roc_auc": _metric(metrics, "roc_auc_ovr_macro"),
        "precision": float(np.mean(precision)) if precision else None,
        "recall": float(np.mean(recall)) if recall else None,
    }


def _metric(metrics: dict[str, Any], key: str) -> float | None:
    value = metrics.get(key, metrics.get("auc") if key == "roc_auc" else None)
    return float(value) if isinstance(value, int | float) else None


def _join_labels(
    window: pl.DataFrame, labels: pl.DataFrame, extra: list[str] | None = None
) -> pl.DataFrame:
    """Window predictions (score and the ``extra`` columns) with their label
    (``tasks.predlog.join_feedback`` semantics)."""
    from tasks.predlog import join_feedback

    extra = extra or []
    needed = {"request_id", "entity_id", "ts", "score", *extra}
    if not labels.height or not needed <= set(window.columns):
        return pl.DataFrame(schema={"score": pl.Float64, **dict.fromkeys(extra, pl.Float64),
                                    "label": pl.Float64})  # fmt: skip
    joined = join_feedback(window.select(sorted(needed)), labels)
    return joined.select("score", *extra, pl.col("label").cast(pl.Float64))


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


# --- drift ---------------------------------------------------------------------------------


def check_drift(
    reference: Reference,
    current: pl.DataFrame,
    dataset: DatasetSpec,
    champion: Champion,
    config: DriftConfig,
    quality: Quality,
) -> DriftResult | None:
    """Drift of the window (``window.monitor_frames``) against the champion's reference
    sample, prediction drift included; None on a schema break (nothing comparable)."""
    if quality.schema_break:
        return None
    from tasks.drift import compute_drift
    from tasks.profiling import SCORE_COLUMN

    return compute_drift(
        reference.sample, current, numeric=dataset.numeric_features,
        categorical=dataset.categorical_features, importance=champion.importance,
        config=config, score_column=SCORE_COLUMN, current_score_column=SCORE_COLUMN,
        class_columns=reference.meta.get("class_columns", ()),
    )  # fmt: skip
