"""How good a model is, where it is unfair, and what its decisions are worth.

Plain functions on numpy arrays (labels, scores) plus :func:`label_vector`, which with
``tasks.predict.score_frame`` turns a frame into them, so training and the champion-vs-challenger
gate measure a model the same way. Metrics come back as JSON-ready dicts (``None`` where a metric is
undefined, e.g. ROC AUC on one class).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import polars as pl

from schemas.base import DatasetSpec
from tasks import metrics as mt

if TYPE_CHECKING:
    from tasks.training.model import Scored

Task = Literal["binary", "regression"]
RELIABILITY_BINS = 10
MIN_SLICE_ROWS = 1


def label_vector(frame: pl.DataFrame, dataset: DatasetSpec) -> np.ndarray:
    """The target as float64: 1/0 (positive class or not) for binary, the value for regression.

    A numeric binary target (e.g. feedback labels already 1/0) is taken as is.
    """
    target = dataset.target
    if target not in frame.columns:
        raise ValueError(f"target column {target!r} is missing (columns: {frame.columns})")
    col = frame[target]
    if col.null_count():
        raise ValueError(f"target column {target!r} has {col.null_count()} missing values")
    if dataset.task == "regression":
        return col.cast(pl.Float64).to_numpy()
    if col.dtype.is_numeric() and not isinstance(dataset.positive_class, str):
        positive = 1 if dataset.positive_class is None else dataset.positive_class
        return (col == positive).cast(pl.Float64).to_numpy()
    if col.dtype.is_numeric():
        values = col.cast(pl.Float64)
        if not values.is_in([0.0, 1.0]).all():
            raise ValueError(f"numeric binary target {target!r} must hold only 0 and 1")
        return values.to_numpy()
    return (col.cast(pl.String) == str(dataset.positive_class)).cast(pl.Float64).to_numpy()


def _safe(fn, *args, **kwargs) -> float | None:
    """A metric, or ``None`` where it is undefined (one class only, too few rows)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = float(fn(*args, **kwargs))
    except ValueError:
        return None
    return None if np.isnan(value) else value


def reliability_curve(y: np.ndarray, scores: np.ndarray, bins: int = RELIABILITY_BINS) -> dict:
    """Mean predicted vs observed positive rate per equal-width score bin (empty bins dropped)."""
    idx = np.clip((np.asarray(scores) * bins).astype(int), 0, bins - 1)
    rows = [
        (float(scores[idx == b].mean()), float(y[idx == b].mean()), int((idx == b).sum()))
        for b in range(bins)
        if (idx == b).any()
    ]
    return {
        "mean_predicted": [r[0] for r in rows],
        "observed_rate": [r[1] for r in rows],
        "count": [r[2] for r in rows],
    }


def compute_metrics(
    y: np.ndarray, scores: np.ndarray, threshold: float | None, task: Task
) -> dict[str, Any]:
    """Test metrics: ranking, calibration and decision quality at ``threshold`` (binary),
    or MSE / RMSE / MAE / R² (regression)."""
    y = np.asarray(y, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if task == "regression":
        mse = mt.mse(y, scores)
        return {
            "n": len(y),
            "mse": mse,
            "rmse": float(np.sqrt(mse)),
            "mae": mt.mae(y, scores),
            "r2": _safe(mt.r2, y, scores),
        }
    threshold = 0.5 if threshold is None else threshold
    pred = (scores >= threshold).astype(int)
    tn, fp, fn, tp = mt.confusion(y, pred)
    decisions = mt.classification(y, pred)
    clipped = np.clip(scores, 1e-15, 1 - 1e-15)
    return {
        "n": len(y),
        "positive_rate": float(y.mean()) if len(y) else None,
        "roc_auc": _safe(mt.roc_auc, y, scores),
        "pr_auc": _safe(mt.average_precision, y, scores),
        "log_loss": _safe(mt.log_loss, y, clipped),
        "brier": float(np.mean((scores - y) ** 2)),
        "threshold": float(threshold),
        **decisions,
        "confusion": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
        "reliability": reliability_curve(y, scores),
    }


def _slice_row(y: np.ndarray, scores: np.ndarray, threshold: float | None, task: Task) -> dict:
    if task == "regression":
        m = compute_metrics(y, scores, None, task)
        return {k: m[k] for k in ("n", "mae", "rmse", "r2")}
    threshold = 0.5 if threshold is None else threshold
    pred = scores >= threshold
    positives = y == 1
    return {
        "n": int(len(y)),
        "positive_rate": float(y.mean()),
        "mean_score": float(scores.mean()),
        "flagged_rate": float(pred.mean()),
        "roc_auc": _safe(mt.roc_auc, y, scores),
        "recall": float(pred[positives].mean()) if positives.any() else None,
        "precision": float(y[pred].mean()) if pred.any() else None,
    }


GAP_METRICS = {
    "binary": ("roc_auc", "recall", "precision", "flagged_rate"),
    "regression": ("mae", "rmse"),
}


def slice_metrics(
    frame: pl.DataFrame,
    y: np.ndarray,
    scores: np.ndarray,
    threshold: float | None,
    segment_columns: list[str] | tuple[str, ...],
    task: Task,
) -> dict[str, Any]:
    """Metrics per value of each segment column, plus the gap (max - min) per metric, so a
    fairness gap is one number: ``{col: {"values": {value: metrics}, "gap": {metric: gap}}}``."""
    y = np.asarray(y, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    out: dict[str, Any] = {}
    for col in segment_columns:
        if col not in frame.columns:
            raise ValueError(f"segment column {col!r} is not in the evaluated frame")
        values = frame[col].cast(pl.String).fill_null("<missing>").to_numpy()
        rows = {
            str(v): _slice_row(y[values == v], scores[values == v], threshold, task)
            for v in sorted(set(values))
            if (values == v).sum() >= MIN_SLICE_ROWS
        }
        gap = {}
        for metric in GAP_METRICS[task]:
            vals = [r[metric] for r in rows.values() if r.get(metric) is not None]
            gap[metric] = float(max(vals) - min(vals)) if len(vals) > 1 else None
        out[col] = {"values": rows, "gap": gap}
    return out


def expected_value(
    y: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    value_retained: float,
    offer_cost: float,
    offer_success_rate: float,
) -> float:
    """Money made in one period by offering a retention deal to every row scored ≥ threshold:
    each offer costs ``offer_cost``; a true positive accepts with ``offer_success_rate`` and is
    then worth ``value_retained``."""
    flagged = np.asarray(scores) >= threshold
    gains = np.asarray(y, dtype=np.float64)[flagged] * offer_success_rate * value_retained
    return float(gains.sum() - offer_cost * flagged.sum())


def choose_threshold(
    y: np.ndarray,
    scores: np.ndarray,
    value_retained: float,
    offer_cost: float,
    offer_success_rate: float,
) -> tuple[float, float]:
    """The score threshold maximising :func:`expected_value` on ``(y, scores)``, and that value.

    Every distinct score is a candidate (ties stay together); flagging nobody (value 0) is
    allowed, returned as a threshold just above the highest score.
    """
    y = np.asarray(y, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) == 0:
        raise ValueError("choose_threshold needs at least one scored row")
    order = np.argsort(-scores, kind="stable")
    s, gain = scores[order], y[order] * offer_success_rate * value_retained - offer_cost
    cum = np.cumsum(gain)
    last_of_tie = np.r_[s[1:] != s[:-1], True]  # a threshold flags whole tie groups
    candidates = np.flatnonzero(last_of_tie)
    best = candidates[np.argmax(cum[candidates])]
    if cum[best] <= 0:
        return float(np.nextafter(s[0], np.inf)), 0.0
    return float(s[best]), float(cum[best])


# --- one model's evaluation, as training reports it --------------------------------------


@dataclass(frozen=True)
class BusinessValue:
    """What a decision is worth, per customer and month (dataset ``extras`` give defaults)."""

    value_retained: float
    offer_cost: float
    offer_success_rate: float

    @classmethod
    def from_dataset(cls, dataset: DatasetSpec, **overrides: float | None) -> BusinessValue:
        fields = ("value_retained", "offer_cost", "offer_success_rate")
        values = {f: overrides.get(f) for f in fields}
        for f in fields:
            if values[f] is None:
                values[f] = dataset.extras.get(f)
        missing = [f for f in fields if values[f] is None]
        if missing and dataset.task == "binary":
            raise ValueError(
                f"business value knobs missing for dataset {dataset.name!r}: "
                f"{', '.join(missing)} (set them in the dataset's extras or the train config)"
            )
        return cls(**{f: float(values[f] or 0.0) for f in fields})


@dataclass
class Evaluation:
    """Test metrics of the model and of the untuned baseline, slices, threshold and value."""

    metrics: dict[str, Any]
    baseline: dict[str, Any]
    slices: dict[str, Any]
    threshold: float | None
    business: dict[str, Any]


def evaluate_model(dataset: DatasetSpec, scored: Scored, business: BusinessValue) -> Evaluation:
    """Evaluate ``scored``: the threshold is chosen on the valid split (never on test);
    metrics, baseline, slices and business value are measured on test."""
    task = dataset.task
    threshold = None
    value: dict[str, Any] = {}
    y, scores = scored.test_y, scored.test_scores
    if task == "binary":
        knobs = asdict(business)
        threshold, valid_value = choose_threshold(scored.valid_y, scored.valid_scores, **knobs)
        test_value = expected_value(y, scores, threshold, **knobs)
        value = {
            **knobs,
            "expected_value_per_month": test_value,
            "expected_value_per_customer": test_value / max(len(y), 1),
            "expected_value_offer_all": expected_value(y, scores, -np.inf, **knobs),
            "expected_value_valid": valid_value,
            "evaluated_customers": len(y),
        }
    segments = dataset.segment_columns
    return Evaluation(
        metrics=compute_metrics(y, scores, threshold, task),
        baseline=compute_metrics(y, scored.baseline_scores, threshold, task),
        slices=slice_metrics(scored.test_frame, y, scores, threshold, segments, task),
        threshold=threshold,
        business=value,
    )
