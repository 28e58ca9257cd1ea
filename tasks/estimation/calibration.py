"""Score calibration for binary models: a logistic regression on a natural cubic spline of the
score's logit (a smooth curve of a few parameters, the identity among them).

Fitted on held-out reference rows and kept only when the scores are miscalibrated: the spline's
likelihood-ratio test against the raw scores rejects at ``MISCALIBRATION_ALPHA`` and its
out-of-fold expected calibration error (ECE) beats the raw scores'. ECE rather than the Brier
score, because the Brier score barely sees over-confidence that inflates an expected ROC AUC
(an over-fitted LightGBM model on Telco: Brier equal, expected AUC 0.03 too high). The level
is lenient (0.5) because the two mistakes cost differently: miscalibrated scores left alone bias
every estimate, a spline fitted to calibrated scores only adds a little noise (synthetic
references of 300 to 4,000 rows: at 0.5 the AUC estimate's error is below isotonic's in each
case, calibrated, over- and under-confident; at 0.05 Telco's champions lose calibration that
helps them).

Why a spline and not isotonic regression (NannyML's choice, and ours before): isotonic
regression pools the reference's local rank inversions into flat steps and makes the steps
between them too steep, so the expected ROC AUC it implies is too high (by about 0.002 on the
reference it was fitted on; more on a window concentrated where the steps are); a curve of
six parameters in logit space cannot chase those inversions and still bends where the scores
need it (Platt scaling, the straight line, could not: 0.002 worse than isotonic on a window
narrowed to the middle of the scores). The fitted curve is stored as piecewise-linear knots on
a grid of the reference's score quantiles (plain JSON, ``np.interp`` to apply).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

CROSS_FIT_FOLDS = 5
BOOTSTRAPS = 20  # splines fitted on resampled reference rows: the calibration's uncertainty
ECE_BINS = 10  # equal-frequency bins
SPLINE_KNOTS = 5  # at quantiles of logit(score): a natural cubic spline of 5 parameters
KNOT_RANGE = (0.05, 0.95)  # the outer knots' quantiles (the spline is linear beyond them)
GRID_POINTS = 257  # score quantiles the fitted curve is stored at
FIT_BINS = 2_048  # at most this many points a logistic fit runs on (see _fit_bins)
RIDGE = 1e-4  # on standardised coefficients: keeps the fit finite when labels separate
NEWTON_STEPS = 50  # at most; a fit converges in about 8
MISCALIBRATION_ALPHA = 0.5  # the likelihood-ratio test's level (see fit_calibration)
# multiply-adds a matrix product may take to stay on one thread (OpenBLAS's threshold): the
# Hessians' product, larger, spreads over threads, which on a busy machine cost far more than
# they save on a product this small (26 fits x 2,048 bins x 36: 23 ms threaded against 0.5 ms
# on one thread, load 14 on 2 cores); it is cut into blocks below this size
_ONE_THREAD = 262_144
_EPS = 1e-6  # scores are clipped into [eps, 1 - eps] before the logit


@dataclass(frozen=True)
class Calibrator:
    """Maps scores to probabilities: piecewise linear through ``knots`` (identity if empty)."""

    knots_x: np.ndarray
    knots_y: np.ndarray

    @property
    def is_identity(self) -> bool:
        return self.knots_x.size == 0

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        s = np.asarray(scores, dtype=np.float64)
        if self.is_identity:
            return np.clip(s, 0.0, 1.0)
        return np.interp(s, self.knots_x, self.knots_y)

    def to_json(self) -> dict[str, list[float]]:
        return {"x": self.knots_x.tolist(), "y": self.knots_y.tolist()}

    @classmethod
    def from_json(cls, doc: dict[str, list[float]]) -> Calibrator:
        x, y = np.asarray(doc["x"], dtype=np.float64), np.asarray(doc["y"], dtype=np.float64)
        if x.shape != y.shape or x.ndim != 1 or np.any(np.diff(x) < 0):
            raise ValueError("calibration knots: x and y of one length, x ascending")
        return cls(x, y)


IDENTITY = Calibrator(np.empty(0), np.empty(0))


def _segments(xs: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each score's segment of the knots ``xs`` (its left knot) and its position in it (0 to
    1, held at the ends): a calibrator's value is ``y[left] (1 - t) + y[left + 1] t``."""
    right = np.clip(np.searchsorted(xs, s, side="right"), 1, xs.size - 1)
    left = right - 1
    span = xs[right] - xs[left]
    t = np.clip(np.divide(s - xs[left], span, out=np.zeros_like(s), where=span > 0), 0, 1)
    return left, t


def _shared_grid(calibrators: tuple[Calibrator, ...]) -> np.ndarray | None:
    """The knots every calibrator shares (the bootstraps of one fit), or None."""
    xs = calibrators[0].knots_x if calibrators else np.empty(0)
    if xs.size < 2 or any(
        c.knots_x is not xs and not np.array_equal(c.knots_x, xs) for c in calibrators[1:]
    ):
        return None
    return xs


def apply_all(calibrators: tuple[Calibrator, ...], scores: np.ndarray) -> np.ndarray:
    """Every calibrator on ``scores``, one row each. Calibrators on one grid of knots (the
    bootstraps of one fit) share the search for each score's segment."""
    s = np.asarray(scores, dtype=np.float64)
    xs = _shared_grid(calibrators)
    if xs is None:
        return np.vstack([c(s) for c in calibrators]) if calibrators else np.empty((0, s.size))
    left, t = _segments(xs, s)
    ys = np.vstack([c.knots_y for c in calibrators])
    return ys[:, left] * (1 - t) + ys[:, left + 1] * t


def sums_all(
    calibrators: tuple[Calibrator, ...], scores: np.ndarray, weights: np.ndarray, square: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each calibrator ``c`` (a row each): ``c(scores) @ weights`` (``weights``: a column
    per sum) and ``c(scores) ** 2 @ square``, what :func:`apply_all` would give, without
    evaluating every calibrator at every score when they share one grid: each sum is linear
    (quadratic) in a calibrator's knot values, so the scores' interpolation weights are summed
    onto the grid's segments once, and each calibrator costs a product over its knots."""
    s = np.asarray(scores, dtype=np.float64)
    xs = _shared_grid(calibrators)
    if xs is None:
        p = apply_all(calibrators, s)
        return p @ weights, (p * p) @ square
    left, t = _segments(xs, s)
    lo, hi, k = 1 - t, t, xs.size

    def on_knots(v_left: np.ndarray, v_right: np.ndarray) -> np.ndarray:
        """What each score adds at its segment's left knot, and at its right knot."""
        return np.bincount(left, v_left, k) + np.bincount(left + 1, v_right, k)

    grid = np.column_stack([on_knots(lo * col, hi * col) for col in np.asarray(weights).T])
    ends = on_knots(square * lo * lo, square * hi * hi)  # y[left]^2, y[right]^2
    cross = np.bincount(left, square * lo * hi, k)[:-1]  # y[left] y[right]
    ys = np.vstack([c.knots_y for c in calibrators])
    return ys @ grid, (ys * ys) @ ends + 2 * (ys[:, :-1] * ys[:, 1:]) @ cross


@dataclass(frozen=True)
class CalibrationFit:
    calibrator: Calibrator  # IDENTITY unless calibrating helped
    ece_raw: float
    ece_calibrated: float  # out-of-fold, of the spline fit
    bootstraps: tuple[Calibrator, ...] = ()  # splines on bootstrap resamples of the rows
    seed: int = 0  # of the cross-fit, the resamples and what measures their spread

    @property
    def calibrated(self) -> bool:
        return not self.calibrator.is_identity


def _logit(scores: np.ndarray) -> np.ndarray:
    s = np.clip(scores, _EPS, 1 - _EPS)
    return np.log(s / (1 - s))


def _spline_basis(x: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Natural cubic spline basis of ``x`` (truncated powers; linear beyond the outer knots):
    ``x`` and one column per inner knot, no intercept."""
    last = knots[-1]

    def d(k: float) -> np.ndarray:
        return (np.maximum(x - k, 0) ** 3 - np.maximum(x - last, 0) ** 3) / (last - k)

    tail = d(knots[-2])
    return np.column_stack([x, *(d(k) - tail for k in knots[:-2])])


def _logistic_fits(x: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Intercept and coefficients (a row per fit) of ridge-penalised, weighted logistic
    regressions of ``labels`` (a row per fit) on the shared ``x`` (standardised columns) with
    ``weights`` (a row per fit), by Newton steps taken side by side (one batched solve a step):
    a fit stops once its step is below 1e-9, as it would alone."""
    x = np.column_stack([np.ones(x.shape[0]), x])
    k = x.shape[1]
    upper = np.triu_indices(k)
    outer = x[:, upper[0]] * x[:, upper[1]]  # a bin's x x', its upper triangle
    block = max(1, _ONE_THREAD // outer.size)
    w = np.zeros((weights.shape[0], k))
    penalty = RIDGE * weights.sum(axis=1)[:, None, None] * np.eye(k)
    penalty[:, 0, 0] = RIDGE  # the intercept: barely (the mean must come out right)
    active = np.arange(weights.shape[0])
    for _ in range(NEWTON_STEPS):
        wa, pa, ra = w[active], penalty[active], weights[active]
        p = 1 / (1 + np.exp(-(wa @ x.T)))
        v = ra * p * (1 - p)
        hessian = np.empty((active.size, k, k))
        hessian[:, upper[0], upper[1]] = np.vstack(
            [v[i : i + block] @ outer for i in range(0, active.size, block)]
        )
        hessian[:, upper[1], upper[0]] = hessian[:, upper[0], upper[1]]
        gradient = (ra * (labels[active] - p)) @ x - (pa @ wa[:, :, None])[..., 0]
        step = np.linalg.solve(hessian + pa, gradient[..., None])[..., 0]
        w[active] = wa + step
        active = active[np.max(np.abs(step), axis=1) >= 1e-9]
        if not active.size:
            break
    return w


@dataclass(frozen=True)
class _Design:
    """What every spline fit on one set of scores shares, computed once: each row's bin
    (:func:`_fit_bins`), the bins' standardised spline basis, the grid of score quantiles the
    curves are stored at and its basis."""

    labels: np.ndarray
    group: np.ndarray
    design: np.ndarray
    grid: np.ndarray
    on_grid: np.ndarray

    @classmethod
    def of(cls, scores: np.ndarray, labels: np.ndarray) -> _Design:
        """Knots at quantiles of the logits (fewer where the scores have fewer distinct
        values: a straight line, Platt scaling, at the least)."""
        s = np.asarray(scores, dtype=np.float64)
        x = _logit(s)
        ordered = np.sort(x)
        at = np.unique(_quantiles(ordered, np.linspace(*KNOT_RANGE, SPLINE_KNOTS)))
        at = at if at.size >= 3 else at[:0]

        def basis(v: np.ndarray) -> np.ndarray:
            return _spline_basis(v, at) if at.size else v[:, None]

        scale = basis(x).std(axis=0)
        scale[scale == 0] = 1.0
        grid = np.unique(_quantiles(np.sort(s), np.linspace(0, 1, GRID_POINTS)))
        group, centres = _fit_bins(x, ordered)
        y = np.asarray(labels, dtype=np.float64)
        return cls(y, group, basis(centres) / scale, grid, basis(_logit(grid)) / scale)

    def fit(self, weights: np.ndarray) -> list[Calibrator]:
        """One calibrator per row of ``weights`` (row weights), all fitted at once."""
        rows = np.atleast_2d(np.asarray(weights, dtype=np.float64))
        member = np.broadcast_to(self.group, rows.shape)
        return self.fit_members(member, rows * self.labels, rows)

    def fit_members(
        self, member: np.ndarray, positive: np.ndarray, weight: np.ndarray | None = None
    ) -> list[Calibrator]:
        """One calibrator per row of ``member`` (rows as their indices into the bins; a
        resample's draws), each row's members counting ``weight`` (1 if None), ``positive`` of
        it positive."""
        shape = (member.shape[0], self.design.shape[0])  # fits x bins
        flat = (np.arange(shape[0])[:, None] * shape[1] + member).ravel()

        def per_bin(v: np.ndarray | None) -> np.ndarray:  # each fit's sums over its bins
            v = None if v is None else v.ravel()
            return np.bincount(flat, weights=v, minlength=shape[0] * shape[1]).reshape(shape)

        total = per_bin(weight).astype(np.float64)
        w = _logistic_fits(self.design, _share(per_bin(positive), total), total)
        curves = 1 / (1 + np.exp(-(w[:, :1] + w[:, 1:] @ self.on_grid.T)))
        return [Calibrator(self.grid, c) for c in curves]


def fit_splines(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> list[Calibrator]:
    """One calibrator per row of ``weights`` (row weights: bootstrap counts, a fold's 0/1),
    each a logistic regression of labels on a natural cubic spline of logit(score) with knots
    at quantiles of the logits, stored on a grid of score quantiles (:class:`_Design`)."""
    return _Design.of(scores, labels).fit(weights)


def _quantiles(ordered: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``np.quantile(x, q)`` (its default, linear method, to the same arithmetic) of the
    sorted ``ordered``: one sort serves many quantiles (``np.quantile`` partitions the data
    once per quantile, 2,047 times for the bins)."""
    at = (ordered.size - 1) * q
    lo = np.floor(at)
    t = at - lo
    a = ordered[lo.astype(np.intp)]
    b = ordered[np.minimum(lo.astype(np.intp) + 1, ordered.size - 1)]
    diff = b - a
    return np.where(t >= 0.5, b - diff * (1 - t), a + diff * t)


def _fit_bins(x: np.ndarray, ordered: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's bin and the bins' mean logit: the rows themselves up to ``FIT_BINS`` rows,
    else ``FIT_BINS`` equal-frequency bins of the logits (``ordered``: ``x`` sorted). A fit
    then costs the same on 20,000 reference rows as on 2,000 (a bin spans 1/FIT_BINS of the
    logits' quantiles: the spline, smooth between 5 knots, moves by far less than the
    calibration's own uncertainty)."""
    if x.size <= FIT_BINS:
        return np.arange(x.size), x
    edges = _quantiles(ordered, np.linspace(0, 1, FIT_BINS + 1)[1:-1])
    at = np.searchsorted(edges, x, side="right")
    group = (np.cumsum(np.bincount(at, minlength=FIT_BINS) > 0) - 1)[at]  # empty bins dropped
    count = np.bincount(group)
    return group, np.bincount(group, weights=x) / count


def _share(part: np.ndarray, total: np.ndarray) -> np.ndarray:
    return np.divide(part, total, out=np.zeros_like(part), where=total > 0)


def fit_spline(scores: np.ndarray, labels: np.ndarray) -> Calibrator:
    """The spline calibration (:func:`fit_splines`) of every row, weighted alike."""
    return fit_splines(scores, labels, np.ones(np.size(scores)))[0]


def expected_calibration_error(p: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> float:
    """Row-weighted mean |mean probability - positive rate| over equal-frequency bins of p."""
    parts = np.array_split(np.argsort(p, kind="stable"), bins)
    return float(sum(abs(p[i].mean() - y[i].mean()) * i.size for i in parts if i.size) / p.size)


def _deviance(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, _EPS, 1 - _EPS)
    return float(-2 * np.sum(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _chi2_isf(alpha: float, df: int) -> float:
    """The chi-square quantile exceeded with probability ``alpha`` (Wilson-Hilferty; within
    about 1% for df >= 2, without importing SciPy)."""
    z = NormalDist().inv_cdf(1 - alpha)
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def fit_calibration(
    scores: np.ndarray,
    labels: np.ndarray,
    *,
    folds: int = CROSS_FIT_FOLDS,
    seed: int = 0,
    alpha: float = MISCALIBRATION_ALPHA,
    bootstraps: int = BOOTSTRAPS,
) -> CalibrationFit:
    """The spline calibration, kept only if the scores are miscalibrated (its likelihood-ratio
    test against the raw scores, a sub-model, rejects at ``alpha``) and its out-of-fold ECE
    beats the raw scores'. Without the test a spline on a few hundred calibrated rows is kept
    about half of the time (its ECE beats the raw scores' by chance). With it, ``bootstraps``
    splines fitted on resamples of the rows (a resample is a row's count), whatever the
    decision: their spread is the calibration's uncertainty."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    fold = np.random.default_rng(seed).permutation(s.size) % folds
    out_of_fold = np.empty_like(s)
    design = _Design.of(s, y)
    # the cross-fit's folds and the curve on every row, each fit's Newton steps side by side
    fits = design.fit(np.vstack([fold != np.arange(folds)[:, None], np.ones(s.size)]))
    spline = fits[folds]
    draws = np.random.default_rng(seed).integers(0, s.size, (bootstraps, s.size))
    boots = tuple(design.fit_members(design.group[draws], y[draws])) if bootstraps else ()
    for k, fitted in enumerate(fits[:folds]):
        out_of_fold[fold == k] = fitted(s[fold == k])
    raw = expected_calibration_error(np.clip(s, 0, 1), y)
    calibrated = expected_calibration_error(out_of_fold, y)
    ratio = _deviance(s, y) - _deviance(spline(s), y)
    both = 0 < y.mean() < 1  # one outcome only: nothing to calibrate against (p -> 0 or 1)
    miscalibrated = both and ratio > _chi2_isf(alpha, SPLINE_KNOTS + 1)
    calibrator = spline if miscalibrated and calibrated < raw else IDENTITY
    return CalibrationFit(calibrator, raw, calibrated, boots, seed)
