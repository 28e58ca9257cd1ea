"""Evidence beyond input drift, gathered by every monitor run (issue #14).

- Late labels, scored: every prediction-time window of the horizon (on the grid of the
  monitor's own windows, ending at this window's end) is scored on the labels arrived so far,
  with coverage and lag, and so are the labels that arrived since the last run.
- The label-free estimate of the current window (CBPE or DLE), stored with the window in the
  monitor state and shown beside the realized value once labels mature.
- The trust check of each window with enough matured labels (concept drift).
- Multivariate drift (domain classifier) and label-rate (prior) drift.

Only the champion's own predictions count (``model_tag``): another model's scores say nothing
about this one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
from pydantic import BaseModel, Field

from schemas.base import DatasetSpec
from tasks.estimation import realized as rz
from tasks.estimation.cbpe import estimate_performance
from tasks.estimation.domain import DomainDrift, domain_drift
from tasks.estimation.stats import Estimate, Metrics
from tasks.estimation.trust import MIN_LABELS, TrustCheck, check_estimate
from tasks.monitoring.estimators import Estimators, encode, estimate
from tasks.monitoring.window import Window, champion_rows
from tasks.predict import PREDICTED_CLASS
from tasks.settings import Settings, get_settings

if TYPE_CHECKING:
    from tasks.monitoring.checks import Quality
    from tasks.monitoring.state import MonitorState
    from tasks.profiling import Reference

_SCORED = ("request_id", "entity_id", "ts", "score", "model_tag", PREDICTED_CLASS)


class EvidenceConfig(BaseModel):
    horizon_hours: float = Field(7 * 24, gt=0, description="late labels: windows this far back")
    estimate: bool = Field(True, description="label-free performance estimate (CBPE / DLE)")
    multivariate: bool = Field(True, description="domain-classifier drift")
    trust_min_labels: int = Field(MIN_LABELS, ge=1, description="matured labels to judge")
    trust_confidence: float = Field(
        0.99,
        gt=0,
        lt=1,
        description="estimate vs realized: a window is looked at again as labels mature",
    )
    label_drift_alpha: float = Field(0.01, gt=0, lt=1, description="label-rate z test level")


@dataclass(frozen=True)
class WindowEstimate:
    """The label-free estimate of one window, as made when it was the current window."""

    rows: int
    metrics: Metrics
    value: Estimate | None = None  # business value at the threshold (binary, with knobs)
    calibrated: bool | None = None


@dataclass(frozen=True)
class WindowEvidence:
    """One prediction-time window: realized (so far) beside estimated, and their check."""

    start: datetime
    end: datetime
    predictions: int
    labels: int
    coverage: float | None
    lag: rz.Lag
    label_rate: Estimate | None
    realized: Metrics
    estimated: Metrics | None
    estimate_source: str | None  # "stored" (made when current) | "recomputed" | None
    trust: TrustCheck | None

    @property
    def concept_drift(self) -> bool:
        return self.trust is not None and self.trust.concept_drift


@dataclass(frozen=True)
class Evidence:
    since: datetime  # the current window
    until: datetime
    task: str
    horizon_hours: float
    window_minutes: float
    windows: list[WindowEvidence]
    labels_since_last_run: rz.RealizedWindow
    label_drift: rz.LabelDrift | None
    label_drifted: bool
    estimate: WindowEstimate | None  # the current window's
    baseline: Metrics | None  # the estimate on the reference rows ("no loss")
    multivariate: DomainDrift | None
    concept_drift: bool
    notes: list[str] = field(default_factory=list)
    reference_realized: Metrics | None = None  # realized on the reference rows ("no loss")


def load_scored(since: datetime, until: datetime, settings: Settings | None = None):
    """Prediction-log keys, time, score and model tag of ``[since, until)`` (no inputs)."""
    from tasks.predlog import load_predictions

    files = [p for p in sorted((settings or get_settings()).predictions_dir.glob("*.parquet"))
             if not p.name.startswith(".")]  # fmt: skip
    keep = (pl.col("ts") >= since) & (pl.col("ts") < until)
    if files:
        try:
            scan = pl.scan_parquet(files)
            cols = [c for c in _SCORED if c in scan.collect_schema().names()]
            return scan.select(cols).filter(keep).collect()
        except pl.exceptions.PolarsError:
            pass
    frame = load_predictions(since, until, settings=settings)
    return frame.select([c for c in _SCORED if c in frame.columns])


def _horizon_scored(
    rows: pl.DataFrame, bounds: Window, horizon: timedelta, settings: Settings | None
) -> pl.DataFrame:
    """The horizon's scored rows: the log before the window read here, the window's own
    ``rows`` reused (their buffers shared): the window is read once per run, not twice."""
    window = rows.select([c for c in _SCORED if c in rows.columns])
    if horizon <= bounds.until - bounds.since:
        return window
    earlier = load_scored(bounds.until - horizon, bounds.since, settings)
    if not earlier.height:
        return window
    return pl.concat([earlier, window], how="diagonal_relaxed", rechunk=False)


def _class_index_as_score(scored: pl.DataFrame, dataset: DatasetSpec) -> pl.DataFrame:
    """A multiclass window is scored on its predicted class: as its index in the contract's
    classes (``DatasetSpec.class_index``, the form labels are logged in), in place of ``score``."""
    predicted = pl.col(PREDICTED_CLASS) if PREDICTED_CLASS in scored.columns else pl.lit(None)
    index = predicted.cast(pl.String).replace_strict(dataset.class_index, default=None,
                                                     return_dtype=pl.Float64)  # fmt: skip
    return scored.with_columns(score=index)


def estimate_window(
    estimators: Estimators, rows: pl.DataFrame, dataset: DatasetSpec
) -> WindowEstimate | None:
    """The current window's label-free estimate (None without an estimator or rows)."""
    rows = champion_rows(rows, estimators.champion_tag)
    if not estimators.can_estimate or not rows.height or "score" not in rows.columns:
        return None
    found = estimate(estimators, rows, dataset)
    return WindowEstimate(rows.height, found.metrics, getattr(found, "value", None),
                          getattr(found, "calibrated", None))  # fmt: skip


def multivariate_drift(
    estimators: Estimators, rows: pl.DataFrame, dataset: DatasetSpec, quality: Quality
) -> DomainDrift | None:
    """Domain-classifier drift of the window (None on a schema break or too few rows)."""
    if estimators.domain is None or quality.schema_break or rows.height < 50:
        return None
    cap = estimators.domain.config.max_rows  # the classifier sees at most this many: encode no more
    if rows.height > cap:
        rows = rows.sample(cap, seed=estimators.domain.config.seed)
    return domain_drift(estimators.domain, encode(rows, dataset))


def _stored(state: MonitorState, tag: str, start: datetime, end: datetime):
    for entry in reversed(state.estimates):
        if entry.champion_tag == tag and entry.start == start and entry.end == end:
            return entry.metrics
    return None


def _window_evidence(
    start: datetime, n: int, part: pl.DataFrame, *, every: timedelta, estimators: Estimators,
    state: MonitorState, config: EvidenceConfig,
) -> WindowEvidence:  # fmt: skip
    task = estimators.task
    realized = rz.score_window(start, every, n, part, threshold=estimators.threshold, task=task)
    stored = _stored(state, estimators.champion_tag, start, start + every)
    trust = estimated = None
    if estimators.cbpe is not None and part.height >= config.trust_min_labels:
        # like for like: the estimate on the labelled rows' scores
        on_labelled = estimate_performance(estimators.cbpe, part["score"].to_numpy())
        trust = check_estimate(on_labelled.metrics, realized.metrics, labels=part.height,
                               min_labels=config.trust_min_labels,
                               confidence=config.trust_confidence)  # fmt: skip
        estimated = on_labelled.metrics if stored is None else None
    estimated = stored if stored is not None else estimated
    source = "stored" if stored is not None else ("recomputed" if estimated else None)
    return WindowEvidence(realized.start, realized.end, n, realized.labels, realized.coverage,
                          realized.lag, realized.label_rate, realized.metrics, estimated, source,
                          trust)  # fmt: skip


def reference_realized(reference: Reference | None, task: str, threshold: float):
    """The champion's realized metrics on its labelled reference rows (None without labels):
    the level realized windows are compared with, like for like."""
    from tasks.profiling import LABEL_COLUMN, SCORE_COLUMN

    sample = reference.sample if reference is not None else None
    if sample is None or task not in ("binary", "regression") or not {
        LABEL_COLUMN, SCORE_COLUMN} <= set(sample.columns):  # fmt: skip
        return None
    pairs = sample.select(pl.col(LABEL_COLUMN, SCORE_COLUMN).cast(pl.Float64, strict=False))
    labelled = pairs.drop_nulls()
    if labelled.height < MIN_LABELS:
        return None
    y, s = labelled[LABEL_COLUMN].to_numpy(), labelled[SCORE_COLUMN].to_numpy()
    if task == "regression":
        return rz.regression_metrics(y, s)
    return rz.binary_metrics(y, s, threshold)


def gather_evidence(
    *,
    rows: pl.DataFrame,
    labels: pl.DataFrame,
    bounds: Window,
    estimators: Estimators,
    dataset: DatasetSpec,
    quality: Quality,
    state: MonitorState,
    config: EvidenceConfig,
    reference: Reference | None,
    settings: Settings | None = None,
) -> Evidence:
    """Late labels per window, the current estimate, trust, multivariate and label drift;
    ``reference`` (the champion's) gives the realized "no loss" level: always stated (None:
    no reference rows), since without it the policy judges realized windows against another
    level."""
    every = bounds.until - bounds.since
    horizon = max(timedelta(hours=config.horizon_hours), every)
    scored = champion_rows(_horizon_scored(rows, bounds, horizon, settings),
                            estimators.champion_tag).drop("model_tag", strict=False)  # fmt: skip
    task = estimators.task
    if task == "multiclass":
        scored = _class_index_as_score(scored, dataset)
    parts = rz.labelled_by_window(scored, labels, every=every, horizon=horizon,
                                  as_of=bounds.until, anchor=bounds.until)  # fmt: skip
    windows = [_window_evidence(s, n, part, every=every, estimators=estimators, state=state,
                                config=config) for s, n, part in parts]  # fmt: skip
    last_run = state.history[-1].at if state.history else bounds.since
    since = rz.labels_since(scored, labels, since=min(last_run, bounds.until), as_of=bounds.until,
                            threshold=estimators.threshold, task=task)  # fmt: skip
    label_drift = None
    if task == "binary" and estimators.reference_labels:
        matured = pl.concat([p for _, _, p in parts]) if parts else pl.DataFrame()
        pos, n_ref = estimators.reference_positives, estimators.reference_labels
        ref = np.r_[np.ones(pos), np.zeros(n_ref - pos)]
        if matured.height:
            label_drift = rz.label_rate_drift(matured["label"].to_numpy(), ref)
    current = estimate_window(estimators, rows, dataset) if config.estimate else None
    domain = multivariate_drift(estimators, rows, dataset, quality) if config.multivariate else None
    return Evidence(
        bounds.since, bounds.until, task, config.horizon_hours, every.total_seconds() / 60,
        windows, since, label_drift,
        label_drift is not None and label_drift.p_value < config.label_drift_alpha, current,
        estimators.baseline, domain, any(w.concept_drift for w in windows),
        list(estimators.notes),
        reference_realized(reference, estimators.task, estimators.threshold),
    )  # fmt: skip
