"""Confidence-based performance estimation (CBPE) for binary models: performance without labels.

Fit on held-out reference rows (scores and labels): a calibration of the scores, kept only if
it helps. On a window of scores alone, each row counts as a fractional positive ``p`` and a
fractional negative ``1 - p`` (``p`` the calibrated probability), which gives the expected
confusion matrix at the champion's threshold and the expected ROC AUC.

The interval combines two standard errors. Sampling: the spread of the realized metric when
labels are drawn as Bernoulli(``p``), by the delta method over the sums the metrics are made
of (positives, true positives, the positives' rank sum), in closed form; rows sharing one
score share one label draw (a repeated request, or a row resampled into the window, is one
entity with one label; for distinct rows with equal scores this only widens the interval a
little). Calibration: the spread of the estimate under calibrations fitted on bootstrap
resamples of the reference.

Everything is computed over the window's distinct scores (one sort), so a window costs
O(n log n) and no per-row Python.

Valid under covariate shift (P(label | inputs) unchanged); a change of that relationship is
what :mod:`tasks.estimation.trust` finds once labels arrive.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tasks.estimation.calibration import CalibrationFit, Calibrator, fit_calibration, sums_all
from tasks.estimation.stats import CONFIDENCE, BinaryMetrics, Estimate, normal

_CAL_ROWS = 5_000  # window rows the calibration uncertainty is measured on


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

    calibration: CalibrationFit  # with its bootstrap calibrations (its uncertainty)
    threshold: float
    value: ValueKnobs | None


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
    seed: int = 0,
) -> CBPEModel:
    """Fit on held-out reference rows (never the training rows: their scores are optimistic)."""
    calibration = fit_calibration(
        np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.float64), seed=seed
    )
    return CBPEModel(calibration, threshold, value)


def _ratio(num: np.ndarray | float, den: np.ndarray | float) -> np.ndarray:
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.full(np.broadcast(num, den).shape, np.nan), where=den > 0)


def _auc(rank_sum, positives, rows, self_pairs) -> np.ndarray:
    """Expected ROC AUC (the Mann-Whitney statistic) from the expected positives' rank sum
    (average ranks on ties: a tie counts half a win), the expected positives, the rows and the
    sum of ``p (1 - p)`` over rows (a row is never paired with itself). NaN where there is no
    pair (one row: its pairs' sum, rounding only, is no pair)."""
    wins = rank_sum - positives * (positives + 1) / 2 - self_pairs / 2
    return _ratio(wins, (positives * (rows - positives) - self_pairs) * (rows > 1))


def _average_ranks(counts: np.ndarray) -> np.ndarray:
    """Each distinct score's average rank (1-based) among the rows, from their counts."""
    return np.cumsum(counts) - (counts - 1) / 2


def expected_auc(scores: np.ndarray, p: np.ndarray) -> float | None:
    """E-weighted ROC AUC: every pair of distinct rows (i, j) counts ``p_i (1 - p_j)`` times,
    as a win when ``s_i > s_j`` and half a win on a tie."""
    s, p = np.asarray(scores, dtype=np.float64), np.asarray(p, dtype=np.float64)
    _, group, counts = np.unique(s, return_inverse=True, return_counts=True)
    rank_sum = np.bincount(group, weights=p) @ _average_ranks(counts.astype(np.float64))
    auc = float(_auc(rank_sum, float(p.sum()), s.size, float(np.dot(p, 1.0 - p))))
    return auc if np.isfinite(auc) else None


@dataclass(frozen=True)
class _Window:
    """A window of scores as its distinct scores (ascending), their row counts, whether each
    is at or above the threshold, and ``weights``: per distinct score its rows, its flagged
    rows and its rows' rank sum (``p @ weights``: the expected positives, true positives and
    positives' rank sum, what every expected metric is made of)."""

    scores: np.ndarray
    counts: np.ndarray
    flagged: np.ndarray
    rows: int
    weights: np.ndarray


def _window(scores: np.ndarray, threshold: float) -> _Window:
    xs, counts = np.unique(scores, return_counts=True)
    c, flagged = counts.astype(np.float64), xs >= threshold
    weights = np.column_stack([c, c * flagged, c * _average_ranks(c)])
    return _Window(xs, c, flagged, int(scores.size), weights)


def _metrics_from_counts(n, n_flagged, pos, tp, value) -> dict[str, np.ndarray]:
    fp, fn = n_flagged - tp, pos - tp
    out = {
        "precision": _ratio(tp, n_flagged),
        "recall": _ratio(tp, pos),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "accuracy": _ratio(n - fp - fn, n),
    }
    if value is not None:
        gain = value.offer_success_rate * value.value_retained
        out["value"] = np.asarray(tp * gain - value.offer_cost * n_flagged, dtype=np.float64)
    return out


def _points(
    w: _Window, sums: np.ndarray, squares: np.ndarray, value: ValueKnobs | None
) -> dict[str, np.ndarray]:
    """Expected metrics from the sums ``p @ w.weights`` and ``p ** 2 @ w.counts`` (``p`` the
    calibrated probabilities at each distinct score; a row of sums per calibration, or one)."""
    positives, tp, rank_sum = np.moveaxis(sums, -1, 0)
    out = _metrics_from_counts(w.rows, w.weights[:, 1].sum(), positives, tp, value)
    out["roc_auc"] = _auc(rank_sum, positives, w.rows, positives - squares)
    return out


def _sampling_std(w: _Window, p: np.ndarray, value: ValueKnobs | None) -> dict[str, float]:
    """Standard error of each realized metric when each distinct score's rows share one label
    drawn from Bernoulli(p): the delta method over (positives P, true positives TP, the
    positives' rank sum A), whose summands are independent across distinct scores."""
    c, f = w.counts, w.flagged.astype(np.float64)
    n, nf = float(w.rows), float(c @ f)
    big_p, tp = float(c @ p), float((c * f) @ p)
    rank_sum = w.weights[:, 2]  # the average rank, times the rows sharing it
    a = float(rank_sum @ p)
    den = big_p * (n - big_p)
    nan = float("nan")
    grads = {  # d metric / d(P, TP, A)
        "roc_auc": (-((big_p + 0.5) * den + (a - big_p * (big_p + 1) / 2) * (n - 2 * big_p))
                    / den**2, 0.0, 1 / den) if den > 0 else (nan, nan, nan),
        "precision": (0.0, 1 / nf, 0.0) if nf > 0 else (nan, nan, nan),
        "recall": (-tp / big_p**2, 1 / big_p, 0.0) if big_p > 0 else (nan, nan, nan),
        "f1": (-2 * tp / (nf + big_p) ** 2, 2 / (nf + big_p), 0.0)
        if nf + big_p > 0 else (nan, nan, nan),
        "accuracy": (-1 / n, 2 / n, 0.0),
    }  # fmt: skip
    if value is not None:
        grads["value"] = (0.0, value.offer_success_rate * value.value_retained, 0.0)
    # Var = sum_g p(1-p) (c dP + c f dTP + R dA)^2, expanded into six sums once
    v, cf = p * (1.0 - p), c * f
    m = {k: float(v @ (x * y)) for k, (x, y) in {
        "pp": (c, c), "tt": (cf, cf), "aa": (rank_sum, rank_sum),
        "pt": (c, cf), "pa": (c, rank_sum), "ta": (cf, rank_sum)}.items()}  # fmt: skip
    out = {}
    for name, (dp, dt, da) in grads.items():
        var = (dp * dp * m["pp"] + dt * dt * m["tt"] + da * da * m["aa"]
               + 2 * (dp * dt * m["pt"] + dp * da * m["pa"] + dt * da * m["ta"]))  # fmt: skip
        out[name] = float(np.sqrt(max(var, 0.0))) if np.isfinite(var) else nan
    return out


def _std(values: np.ndarray) -> np.ndarray:
    """Each row's sample standard deviation over its finite values (NaN below two)."""
    ok = np.isfinite(values)
    count = ok.sum(axis=-1)
    mean = np.where(ok, values, 0.0).sum(axis=-1) / np.maximum(count, 1)
    square = np.where(ok, (values - mean[:, None]) ** 2, 0.0).sum(axis=-1)
    return np.sqrt(_ratio(square, count - 1))


def _calibration_std(model: CBPEModel, s: np.ndarray, whole: _Window) -> dict[str, float]:
    """Spread of each point estimate over the bootstrap calibrations, on at most ``_CAL_ROWS``
    of the window's rows (a bias every row shares: a total, the value, scales with the rows);
    ``whole`` is the window of all of ``s``."""
    fit = model.calibration
    rows = s if s.size <= _CAL_ROWS else np.random.default_rng(fit.seed).choice(s, _CAL_ROWS)
    w = whole if rows is s else _window(rows, model.threshold)
    sums = sums_all(fit.bootstraps, w.scores, w.weights, w.counts)
    points = _points(w, *sums, model.value)
    scale = {"value": s.size / rows.size}
    spread = _std(np.vstack(list(points.values())))
    return {k: float(v) * scale.get(k, 1.0) for k, v in zip(points, spread, strict=True)}


def estimate_performance(
    model: CBPEModel, scores: np.ndarray, *, confidence: float = CONFIDENCE
) -> CBPEResult:
    """Estimated metrics of the champion on a window of scores (no labels)."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    calibrated = model.calibration.calibrated
    if not s.size:
        empty = BinaryMetrics(None, None, None, None, None)
        return CBPEResult(
            0, model.threshold, calibrated, ExpectedConfusion(0, 0, 0, 0), empty, None
        )
    w = _window(s, model.threshold)
    p = model.calibration.calibrator(w.scores)
    sums = (p @ w.weights, (p * p) @ w.counts)
    point = {k: float(v) for k, v in _points(w, *sums, model.value).items()}
    sampling, calibration = _sampling_std(w, p, model.value), _calibration_std(model, s, w)

    def est(name: str, lo: float = 0.0, hi: float = 1.0) -> Estimate | None:
        value, std = point[name], sampling[name]
        if not (math.isfinite(value) and math.isfinite(std)):
            return None
        spread = calibration[name]
        std = math.hypot(std, spread if math.isfinite(spread) else 0.0)
        return normal(value, std, confidence, lo=lo, hi=hi)

    n, n_flagged = w.rows, float(w.counts[w.flagged].sum())
    pos = w.counts * p
    tp, positives = float(pos[w.flagged].sum()), float(pos.sum())
    confusion = ExpectedConfusion(
        n - n_flagged - (positives - tp), n_flagged - tp, positives - tp, tp
    )
    metrics = BinaryMetrics(*(est(k) for k in ("roc_auc", "precision", "recall", "f1", "accuracy")))
    value = est("value", -np.inf, np.inf) if model.value is not None else None
    return CBPEResult(n, model.threshold, calibrated, confusion, metrics, value)


def cbpe_to_json(model: CBPEModel) -> dict[str, Any]:
    """The fitted state as plain JSON types (calibration knots, never code)."""
    fit = model.calibration
    return {
        "calibrator": fit.calibrator.to_json(),
        "ece_raw": fit.ece_raw,
        "ece_calibrated": fit.ece_calibrated,
        "threshold": model.threshold,
        "value": None if model.value is None else vars(model.value),
        "bootstraps": [b.to_json() for b in fit.bootstraps],
        "seed": fit.seed,
    }


def cbpe_from_json(doc: Mapping[str, Any]) -> CBPEModel:
    boots = tuple(Calibrator.from_json(b) for b in doc["bootstraps"])
    fit = CalibrationFit(
        Calibrator.from_json(doc["calibrator"]), float(doc["ece_raw"]),
        float(doc["ece_calibrated"]), boots, int(doc["seed"]),
    )  # fmt: skip
    value = None if doc["value"] is None else ValueKnobs(**doc["value"])
    return CBPEModel(fit, float(doc["threshold"]), value)
