"""Confidence-based performance estimation (CBPE) for binary models: performance without labels.

Fit on held-out reference rows (scores and labels): a calibration of the scores, kept only if
it helps. On a window of scores alone, each row counts as a fractional positive ``p`` and a
fractional negative ``1 - p`` (``p`` the calibrated probability), which gives the expected
confusion matrix at the champion's threshold and the expected ROC AUC. The interval is the
sampling error of the realized metric: labels drawn as Bernoulli(``p``) many times (vectorised),
the metric computed on each draw, its standard deviation around the estimate, combined with
the calibration's own uncertainty (the spread of the estimate under calibrations fitted on
bootstrap resamples of the reference, measured on at most ``_CAL_ROWS`` window rows).

Valid under covariate shift (P(label | inputs) unchanged); a change of that relationship is
what :mod:`tasks.estimation.trust` finds once labels arrive.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tasks.estimation.calibration import CalibrationFit, Calibrator, fit_calibration, fit_isotonic
from tasks.estimation.stats import CONFIDENCE, BinaryMetrics, Estimate, normal
from tasks.metrics import rank_average

REPLICATES = 200  # label draws for the sampling-error interval
_BLOCK = 25  # replicates drawn at once (bounds memory to _BLOCK x rows)
BOOTSTRAPS = 20  # calibrations fitted on resampled reference rows (calibration uncertainty)
_CAL_ROWS = 5_000  # window rows the calibration uncertainty is measured on
_SIM_ROWS = 10_000  # beyond this, draws run on a sample and the spread scales by sqrt(rows)


@dataclass(frozen=True)
class ValueKnobs:
    """Business value of acting on a flagged row (``tasks.evaluate.expected_value``'s terms)."""

    value_retained: float
    offer_cost: float
    offer_success_rate: float

    @classmethod
    def from_extras(cls, extras: Mapping[str, Any]) -> ValueKnobs | None:
        """The knobs from a dataset's ``extras``; ``None`` when the dataset configures none."""
        keys = ("value_retained", "offer_cost", "offer_success_rate")
        if not all(isinstance(extras.get(k), int | float) for k in keys):
            return None
        return cls(*(float(extras[k]) for k in keys))


@dataclass(frozen=True)
class CBPEModel:
    """What CBPE keeps from the reference: the calibration and the champion's decision rule."""

    calibration: CalibrationFit
    threshold: float
    value: ValueKnobs | None
    bootstraps: tuple[Calibrator, ...]
    replicates: int = REPLICATES
    seed: int = 0


@dataclass(frozen=True)
class ExpectedConfusion:
    tn: float
    fp: float
    fn: float
    tp: float


@dataclass(frozen=True)
class CBPEResult:
    rows: int
    threshold: float
    calibrated: bool
    confusion: ExpectedConfusion
    metrics: BinaryMetrics
    value: Estimate | None  # business value at the threshold (None when no knobs)


def fit_cbpe(
    scores: np.ndarray,
    labels: np.ndarray,
    *,
    threshold: float,
    value: ValueKnobs | None = None,
    replicates: int = REPLICATES,
    seed: int = 0,
) -> CBPEModel:
    """Fit on held-out reference rows (never the training rows: their scores are optimistic)."""
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    rng = np.random.default_rng(seed)
    boots = tuple(fit_isotonic(s[i], y[i]) for i in rng.integers(0, s.size, (BOOTSTRAPS, s.size)))
    calibration = fit_calibration(s, y, seed=seed)
    return CBPEModel(calibration, threshold, value, boots, replicates, seed)


def expected_auc(scores: np.ndarray, p: np.ndarray) -> float | None:
    """E-weighted ROC AUC: every pair of distinct rows (i, j) counts ``p_i (1 - p_j)`` times,
    as a win when ``s_i > s_j`` and half a win on a tie."""
    order = np.argsort(scores, kind="mergesort")
    s, p = scores[order], p[order]
    q = 1.0 - p
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    group = np.cumsum(np.r_[True, s[1:] != s[:-1]]) - 1
    neg_in_group = np.add.reduceat(q, starts)
    neg_below = np.cumsum(neg_in_group) - neg_in_group
    wins = p * (neg_below[group] + 0.5 * (neg_in_group[group] - q))
    pairs = p.sum() * q.sum() - float(np.dot(p, q))
    return float(wins.sum() / pairs) if pairs > 0 else None


def _ratio(num: np.ndarray | float, den: np.ndarray | float) -> np.ndarray:
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.full(np.broadcast(num, den).shape, np.nan), where=den > 0)


def _sample(s: np.ndarray, rows: int, seed: int) -> np.ndarray:
    """Row indices: all, or ``rows`` of them at random."""
    if s.size <= rows:
        return np.arange(s.size)
    return np.random.default_rng(seed).choice(s.size, rows, replace=False)


def _sampling_std(model: CBPEModel, s: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Spread of each realized metric over ``replicates`` label draws from Bernoulli(p).

    Beyond ``_SIM_ROWS`` rows the draws run on a sample: a rate's spread shrinks with the
    square root of the rows, a total's (value) grows with it."""
    keep = _sample(s, _SIM_ROWS, model.seed)
    scale = np.sqrt(keep.size / s.size)
    s, p, m = s[keep], p[keep], keep.size
    flagged = s >= model.threshold
    weights = np.column_stack([np.ones(m), flagged.astype(np.float64), rank_average(s)])
    rng = np.random.default_rng(model.seed)
    sums = []
    for start in range(0, model.replicates, _BLOCK):
        k = min(_BLOCK, model.replicates - start)
        draws = rng.random((k, m), dtype=np.float32) < p.astype(np.float32)
        sums.append(draws.astype(np.float64) @ weights)
    pos, tp, rank_sum = np.vstack(sums).T
    sims = _metrics_from_counts(m, flagged.sum(), pos, tp, model.value, rank_sum)
    return {k: _std(v) * (1 / scale if k == "value" else scale) for k, v in sims.items()}


def _metrics_from_counts(n, n_flagged, pos, tp, value, rank_sum=None) -> dict[str, np.ndarray]:
    fp, fn = n_flagged - tp, pos - tp
    out = {
        "precision": _ratio(tp, n_flagged),
        "recall": _ratio(tp, pos),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "accuracy": _ratio(n - fp - fn, n),
    }
    if rank_sum is not None:
        out["roc_auc"] = _ratio(rank_sum - pos * (pos + 1) / 2, pos * (n - pos))
    if value is not None:
        gain = value.offer_success_rate * value.value_retained
        out["value"] = np.asarray(tp * gain - value.offer_cost * n_flagged, dtype=np.float64)
    return out


def _point(s: np.ndarray, p: np.ndarray, flagged: np.ndarray, value) -> dict[str, float]:
    tp, pos = float(p[flagged].sum()), float(p.sum())
    out = _metrics_from_counts(s.size, int(flagged.sum()), pos, tp, value)
    point: dict[str, float] = {k: float(v) for k, v in out.items()}
    point["roc_auc"] = expected_auc(s, p) or float("nan") if s.size else float("nan")
    return point


def _std(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(values.std(ddof=1)) if values.size > 1 else float("nan")


def _calibration_std(model: CBPEModel, s: np.ndarray) -> dict[str, float]:
    """Spread of each point estimate over the bootstrap calibrations (on at most
    ``_CAL_ROWS`` rows: a bias shared by every row, so a total scales with the rows)."""
    keep = _sample(s, _CAL_ROWS, model.seed)
    sub = s[keep]
    flagged = sub >= model.threshold
    points = [_point(sub, cal(sub), flagged, model.value) for cal in model.bootstraps]
    scale = {"value": s.size / keep.size}
    return {k: _std([pt[k] for pt in points]) * scale.get(k, 1.0) for k in points[0]}


def estimate_performance(
    model: CBPEModel, scores: np.ndarray, *, confidence: float = CONFIDENCE
) -> CBPEResult:
    """Estimated metrics of the champion on a window of scores (no labels)."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    calibrated = model.calibration.calibrated
    n = s.size
    if not n:
        empty = BinaryMetrics(None, None, None, None, None)
        return CBPEResult(
            0, model.threshold, calibrated, ExpectedConfusion(0, 0, 0, 0), empty, None
        )
    p = model.calibration.calibrator(s)
    flagged = s >= model.threshold
    point = _point(s, p, flagged, model.value)
    sampling, calibration = _sampling_std(model, s, p), _calibration_std(model, s)

    def est(name: str, lo: float = 0.0, hi: float = 1.0) -> Estimate | None:
        value, std = point[name], sampling[name]
        if not (np.isfinite(value) and np.isfinite(std)):
            return None
        std = float(np.hypot(std, np.nan_to_num(calibration[name])))
        return normal(value, std, confidence, lo=lo, hi=hi)

    tp, pos, n_flagged = float(p[flagged].sum()), float(p.sum()), int(flagged.sum())
    confusion = ExpectedConfusion(n - n_flagged - (pos - tp), n_flagged - tp, pos - tp, tp)
    metrics = BinaryMetrics(*(est(k) for k in ("roc_auc", "precision", "recall", "f1", "accuracy")))
    value = est("value", -np.inf, np.inf) if model.value is not None else None
    return CBPEResult(n, model.threshold, calibrated, confusion, metrics, value)
