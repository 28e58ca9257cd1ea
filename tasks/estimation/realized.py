"""Late labels, scored: realized metrics per prediction-time window, whenever labels arrive.

Every run joins all labels that have arrived (by ``as_of``) to the predictions they belong to
(``tasks.predlog.join_feedback`` semantics), so a label arriving after its window closed still
counts for that window: a window's metrics are recomputed as its labels mature, with coverage
(labels / predictions) beside them. Also: the labels that arrived since the last run, the lag
between prediction and label, and the label rate against the reference (prior drift).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import numpy as np
import polars as pl

from tasks.estimation.stats import (
    CONFIDENCE,
    BinaryMetrics,
    Estimate,
    Metrics,
    MulticlassMetrics,
    RegressionMetrics,
    delong,
    normal,
    two_proportion_z,
    wilson,
)

Task = Literal["binary", "regression", "multiclass"]
_KEYS = ("request_id", "entity_id", "ts")


@dataclass(frozen=True)
class Lag:
    """Seconds from prediction to label arrival, over the labels counted."""

    median_seconds: float | None
    p90_seconds: float | None


@dataclass(frozen=True)
class RealizedWindow:
    """Realized performance on the labelled predictions of one window.

    For a prediction-time window, ``start``/``end`` bound the predictions' time and
    ``predictions``/``coverage`` are set; for "labels since the last run", they bound the
    labels' arrival time and those two are ``None``.
    """

    start: datetime
    end: datetime
    predictions: int | None
    labels: int
    coverage: float | None
    label_rate: Estimate | None  # share of positive labels (binary), Wilson interval
    metrics: Metrics
    lag: Lag


@dataclass(frozen=True)
class LabelDrift:
    """Label rate of arrived labels against the reference, by a two-proportion z test."""

    rate: float
    reference_rate: float
    labels: int
    reference_labels: int
    z: float
    p_value: float


def binary_metrics(
    y: np.ndarray, scores: np.ndarray, threshold: float, confidence: float = CONFIDENCE
) -> BinaryMetrics:
    """Realized metrics at ``threshold``: AUC with DeLong's interval, the rest with Wilson's
    (F1 as the proportion 2·TP / (2·TP + FP + FN), an approximation)."""
    y = np.asarray(y, dtype=np.float64) == 1
    flagged = np.asarray(scores, dtype=np.float64) >= threshold
    tp, fp = int((y & flagged).sum()), int((~y & flagged).sum())
    fn = int((y & ~flagged).sum())
    return BinaryMetrics(
        roc_auc=delong(y, scores, confidence),
        precision=wilson(tp, tp + fp, confidence),
        recall=wilson(tp, tp + fn, confidence),
        f1=wilson(2 * tp, 2 * tp + fp + fn, confidence),
        accuracy=wilson(y.size - fp - fn, y.size, confidence),
    )


def regression_metrics(
    y: np.ndarray, predictions: np.ndarray, confidence: float = CONFIDENCE
) -> RegressionMetrics:
    """MAE and RMSE with normal intervals (RMSE's by the delta method on the MSE)."""
    err = np.asarray(y, dtype=np.float64) - np.asarray(predictions, dtype=np.float64)
    n = err.size
    if n < 2:
        return RegressionMetrics(None, None)
    abs_err, sq_err = np.abs(err), err**2
    mae = normal(float(abs_err.mean()), float(abs_err.std(ddof=1) / math.sqrt(n)), confidence, lo=0)
    rmse = math.sqrt(float(sq_err.mean()))
    rmse_std = float(sq_err.std(ddof=1) / math.sqrt(n)) / (2 * rmse) if rmse > 0 else 0.0
    return RegressionMetrics(mae, normal(rmse, rmse_std, confidence, lo=0))


def labelled_predictions(
    predictions: pl.DataFrame, feedback: pl.DataFrame, *, as_of: datetime, score_column="score"
) -> pl.DataFrame:
    """Predictions with the labels that had arrived by ``as_of``: ts, score, label, label_ts."""
    from tasks.predlog import join_feedback

    preds = predictions.select(
        *(
            pl.col(c) if c in predictions.columns else pl.lit(None, pl.String).alias(c)
            for c in _KEYS
        ),
        pl.col(score_column).cast(pl.Float64).alias("score"),
    )
    arrived = feedback.filter(pl.col("ts") <= as_of)
    if not arrived.height:
        joined = preds.clear().with_columns(label=pl.lit(0.0), label_ts=pl.col("ts"))
    else:
        joined = join_feedback(preds, arrived)
    return joined.select("ts", "score", pl.col("label").cast(pl.Float64), "label_ts")


def _lag(frame: pl.DataFrame) -> Lag:
    if not frame.height:
        return Lag(None, None)
    seconds = (frame["label_ts"] - frame["ts"]).dt.total_microseconds().to_numpy() / 1e6
    return Lag(float(np.median(seconds)), float(np.quantile(seconds, 0.9)))


def _score(
    frame: pl.DataFrame, task: Task, threshold: float | None, confidence: float
) -> tuple[Metrics, Estimate | None]:
    y, s = frame["label"].to_numpy(), frame["score"].to_numpy()
    if task == "regression":
        return regression_metrics(y, s, confidence), None
    if task == "multiclass":  # ``score`` is the predicted class's index, as labels are logged
        hits = float((y == s).sum())
        return MulticlassMetrics(wilson(hits, y.size, confidence)), None
    if threshold is None:
        raise ValueError("binary metrics need the champion's threshold")
    return binary_metrics(y, s, threshold, confidence), wilson(
        float((y == 1).sum()), y.size, confidence
    )


def window_start(every: timedelta, anchor: datetime | None = None) -> pl.Expr:
    """The start of each row's window: ``ts`` floored to ``every``, on a grid through
    ``anchor`` (default: the epoch)."""
    if anchor is None:
        return pl.col("ts").dt.truncate(every)
    step = int(every / timedelta(microseconds=1))
    offset = (pl.col("ts") - anchor).dt.total_microseconds()
    return pl.lit(anchor) + pl.duration(microseconds=offset.floordiv(step) * step)


def labelled_by_window(
    predictions: pl.DataFrame,
    feedback: pl.DataFrame,
    *,
    every: timedelta,
    horizon: timedelta,
    as_of: datetime,
    anchor: datetime | None = None,
    score_column: str = "score",
) -> list[tuple[datetime, int, pl.DataFrame]]:
    """Per prediction-time window with predictions in ``[as_of - horizon, as_of)``, oldest
    first: its start, its prediction count, its labelled rows (as :func:`labelled_predictions`)."""
    recent = predictions.filter(pl.col("ts") >= as_of - horizon, pl.col("ts") < as_of)
    labelled = labelled_predictions(recent, feedback, as_of=as_of, score_column=score_column)
    start = window_start(every, anchor).alias("start")
    counts = recent.group_by(start).len()
    by_start = {
        key[0]: part.drop("start")
        for key, part in labelled.with_columns(start).partition_by("start", as_dict=True).items()
    }
    return [(s, n, by_start.get(s, labelled.clear())) for s, n in counts.sort("start").iter_rows()]


def score_window(
    start: datetime,
    every: timedelta,
    predictions: int,
    part: pl.DataFrame,
    *,
    threshold: float | None = None,
    task: Task = "binary",
    confidence: float = CONFIDENCE,
) -> RealizedWindow:
    """Realized metrics of one window's labelled rows (``part``), with coverage and lag."""
    metrics, rate = _score(part, task, threshold, confidence)
    coverage = part.height / predictions if predictions else None
    return RealizedWindow(
        start, start + every, predictions, part.height, coverage, rate, metrics, _lag(part)
    )


def score_windows(
    parts: list[tuple[datetime, int, pl.DataFrame]],
    every: timedelta,
    *,
    threshold: float | None = None,
    task: Task = "binary",
    confidence: float = CONFIDENCE,
) -> list[RealizedWindow]:
    """:func:`score_window` of each of :func:`labelled_by_window`'s windows, oldest first."""
    return [
        score_window(start, every, n, part, threshold=threshold, task=task, confidence=confidence)
        for start, n, part in parts
    ]


def labels_since(
    predictions: pl.DataFrame,
    feedback: pl.DataFrame,
    *,
    since: datetime,
    as_of: datetime,
    threshold: float | None = None,
    task: Task = "binary",
    confidence: float = CONFIDENCE,
    score_column: str = "score",
) -> RealizedWindow:
    """Realized metrics on the labels that arrived in ``(since, as_of]``, whatever the time of
    their predictions (what the last run has not seen yet)."""
    labelled = labelled_predictions(predictions, feedback, as_of=as_of, score_column=score_column)
    part = labelled.filter(pl.col("label_ts") > since)
    metrics, rate = _score(part, task, threshold, confidence)
    return RealizedWindow(since, as_of, None, part.height, None, rate, metrics, _lag(part))


def label_rate_drift(labels: np.ndarray, reference_labels: np.ndarray) -> LabelDrift | None:
    """Positive-label rate of arrived labels against the reference's (binary 1/0 labels)."""
    y, ref = np.asarray(labels, dtype=np.float64), np.asarray(reference_labels, dtype=np.float64)
    if not y.size or not ref.size:
        return None
    x1, x2 = float((y == 1).sum()), float((ref == 1).sum())
    z, p = two_proportion_z(x1, y.size, x2, ref.size)
    return LabelDrift(x1 / y.size, x2 / ref.size, int(y.size), int(ref.size), z, p)
