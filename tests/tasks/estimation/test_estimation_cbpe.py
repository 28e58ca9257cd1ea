"""CBPE: calibration that helps or stays out, expected metrics that match realized ones on
synthetic calibrated scores within their intervals, closed-form sampling errors that match
simulated label draws."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.estimation import calibration
from tasks.estimation.calibration import (
    apply_all,
    fit_calibration,
    fit_spline,
    fit_splines,
    sums_all,
)
from tasks.estimation.cbpe import (
    ValueKnobs,
    _sampling_std,
    _window,
    estimate_performance,
    expected_auc,
    fit_cbpe,
)
from tasks.estimation.realized import binary_metrics
from tasks.estimation.stats import metric_items
from tasks.evaluate import expected_value

KNOBS = ValueKnobs(value_retained=390.0, offer_cost=40.0, offer_success_rate=0.3)


def _rows(n: int, rng: np.random.Generator, a: float = 2.0, b: float = 5.0):
    """True probabilities p ~ Beta(a, b), labels ~ Bernoulli(p)."""
    p = rng.beta(a, b, n)
    return p, (rng.random(n) < p).astype(float)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _logit(p):
    return np.log(p / (1 - p))


@pytest.mark.parametrize(
    "true_logit",
    [lambda x: 1.8 * x - 0.5,  # Platt's straight line
     lambda x: np.where(x < -0.8, 0.5 * (x + 0.8), 2.0 * (x + 0.8)) - 1.0],  # a bend
)  # fmt: skip
def test_the_spline_recovers_a_known_calibration(true_logit) -> None:
    rng = np.random.default_rng(1)
    s = rng.beta(2, 4, 40_000)
    y = (rng.random(s.size) < _sigmoid(true_logit(_logit(s)))).astype(float)
    fitted = fit_spline(s, y)
    middle = np.quantile(s, np.linspace(0.05, 0.95, 50))
    assert np.max(np.abs(fitted(middle) - _sigmoid(true_logit(_logit(middle))))) < 0.03
    assert np.all(np.diff(fitted(np.sort(s))) >= -1e-12)  # monotone here
    assert fitted(s).mean() == pytest.approx(y.mean(), abs=2e-3)  # keeps the mean


def test_spline_weights_are_row_counts() -> None:
    """A bootstrap resample is a row's count: doubling every weight changes nothing, a zero
    weight drops the row (the fit on the kept rows' own knots differs only by the knots)."""
    rng = np.random.default_rng(4)
    s, y = _rows(3_000, rng)
    once, twice = fit_splines(s, y, np.ones((2, s.size)) * np.array([[1.0], [2.0]]))
    assert np.allclose(once.knots_y, twice.knots_y, atol=1e-9)
    (half,) = fit_splines(s, y, (np.arange(s.size) % 2 == 0)[None, :])
    middle = np.quantile(s, np.linspace(0.05, 0.95, 50))
    assert np.max(np.abs(half(middle) - fit_spline(s[::2], y[::2])(middle))) < 0.01
    assert not np.allclose(half(s), once(s), atol=1e-4)  # the dropped rows did count


def test_apply_all_is_each_calibrator_in_turn() -> None:
    """Bootstraps of one fit share their grid (one segment search for all); calibrators on
    different grids are applied one by one; beyond the grid the end values hold."""
    rng = np.random.default_rng(7)
    s, y = _rows(3_000, rng)
    boots = tuple(fit_splines(s, y, rng.integers(0, 3, (5, s.size)).astype(float)))
    probe = np.concatenate([[-0.5, 0.0, 1.0, 1.5], rng.random(500), boots[0].knots_x[:9]])
    assert np.allclose(apply_all(boots, probe), np.vstack([c(probe) for c in boots]), atol=1e-12)
    mixed = (*boots[:2], fit_spline(s[::2], y[::2]))
    assert np.allclose(apply_all(mixed, probe), np.vstack([c(probe) for c in mixed]), atol=1e-12)
    weights, square = rng.random((probe.size, 3)), rng.random(probe.size)
    for group in (boots, mixed):  # on the knots (one grid) and row by row (mixed grids)
        p = np.vstack([c(probe) for c in group])
        sums, squares = sums_all(group, probe, weights, square)
        assert np.allclose(sums, p @ weights, rtol=1e-12, atol=0)
        assert np.allclose(squares, (p * p) @ square, rtol=1e-12, atol=0)


def test_binned_fits_match_row_fits(monkeypatch) -> None:
    """Above FIT_BINS rows a fit runs on equal-frequency bins of the logits: the curve is the
    row-level fit's within a small fraction of its own bootstrap spread."""
    rng = np.random.default_rng(8)
    s = rng.beta(2, 4, 20_000)
    y = (rng.random(s.size) < _sigmoid(1.5 * _logit(s) - 0.3)).astype(float)
    binned = fit_spline(s, y)
    monkeypatch.setattr(calibration, "FIT_BINS", s.size)
    rows = fit_spline(s, y)
    middle = np.quantile(s, np.linspace(0.02, 0.98, 80))
    assert np.max(np.abs(binned(middle) - rows(middle))) < 2e-3


def _plain_fit(s: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The fit the calibration had before its pieces were shared and its fits batched:
    ``np.quantile`` knots, grid and bins, one Newton loop per row of ``weights``; the curves
    on the grid."""
    x = calibration._logit(s)
    at = np.unique(np.quantile(x, np.linspace(*calibration.KNOT_RANGE, calibration.SPLINE_KNOTS)))
    scale = calibration._spline_basis(x, at).std(axis=0)
    grid = np.unique(np.quantile(s, np.linspace(0, 1, calibration.GRID_POINTS)))
    if s.size > calibration.FIT_BINS:
        edges = np.quantile(x, np.linspace(0, 1, calibration.FIT_BINS + 1)[1:-1])
        _, group = np.unique(np.searchsorted(edges, x, side="right"), return_inverse=True)
    else:
        group = np.arange(s.size)
    design = np.column_stack([np.ones(group.max() + 1), calibration._spline_basis(
        np.bincount(group, weights=x) / np.bincount(group), at) / scale])  # fmt: skip
    curves = []
    for row in weights:
        total = np.bincount(group, weights=row)
        share = np.bincount(group, weights=row * y) / np.where(total > 0, total, 1)
        penalty = calibration.RIDGE * np.diag([1.0] + [row.sum()] * (design.shape[1] - 1))
        w = np.zeros(design.shape[1])
        for _ in range(calibration.NEWTON_STEPS):
            p = _sigmoid(design @ w)
            hessian = design.T @ (design * (total * p * (1 - p))[:, None]) + penalty
            step = np.linalg.solve(hessian, design.T @ (total * (share - p)) - penalty @ w)
            w += step
            if np.max(np.abs(step)) < 1e-9:
                break
        curves.append(_sigmoid(w[0] + calibration._spline_basis(calibration._logit(grid), at)
                               / scale @ w[1:]))  # fmt: skip
    return np.array(curves)


@pytest.mark.parametrize("rows", [1_500, 9_000])
def test_the_shared_batched_fit_is_the_plain_one(rows: int) -> None:
    """The curve, the cross-fit's folds and the bootstraps, fitted at once on pieces computed
    once per reference (knots, grid, bins: tied scores leave some bins empty), are each the
    plain one-at-a-time fit's to rounding."""
    rng = np.random.default_rng(11)
    s = np.round(rng.beta(2, 4, rows), 3)  # ties
    y = (rng.random(rows) < _sigmoid(1.5 * _logit(np.clip(s, 1e-3, 1)) - 0.3)).astype(float)
    fit = fit_calibration(s, y, seed=3, bootstraps=4)
    draws = np.random.default_rng(3).integers(0, rows, (4, rows))
    counts = np.stack([np.bincount(d, minlength=rows) for d in draws]).astype(float)
    plain = _plain_fit(s, y, np.vstack([np.ones(rows), counts]))
    assert fit.calibrated
    assert np.max(np.abs(fit.calibrator.knots_y - plain[0])) < 1e-12
    assert np.max(np.abs(np.vstack([b.knots_y for b in fit.bootstraps]) - plain[1:])) < 1e-12
    fold = np.random.default_rng(3).permutation(rows) % 5
    folds = (fold != np.arange(5)[:, None]).astype(float)
    batched = np.vstack([c.knots_y for c in fit_splines(s, y, folds)])
    assert np.max(np.abs(batched - _plain_fit(s, y, folds))) < 1e-12


def test_calibration_is_kept_only_when_it_helps() -> None:
    rng = np.random.default_rng(2)
    p, y = _rows(4_000, rng)
    skewed = fit_calibration(p**3, y)  # ranks right, probabilities far too low
    assert skewed.calibrated and skewed.ece_calibrated < skewed.ece_raw
    overconfident = fit_calibration(1 / (1 + (1 / p - 1) ** 2), y)  # logit doubled
    assert overconfident.calibrated
    # already calibrated: the spline rarely helps on a small reference, and stays near identity
    kept = [fit_calibration(*_rows(300, np.random.default_rng(s))).calibrated for s in range(20)]
    assert sum(kept) <= 8
    assert not fit_calibration(p, np.zeros_like(p)).calibrated  # one outcome: nothing to fit
    near = fit_calibration(p, y).calibrator
    assert np.mean(np.abs(near(p) - p)) < 0.03


def test_calibration_corrects_an_overconfident_auc_estimate() -> None:
    """Over-confident scores (an over-fitted model) inflate the expected AUC; calibration on the
    reference brings it back to the realized one (10 references of 4,000 rows: within 0.01 on
    average, 0.02 each)."""
    sharpen = lambda q: 1 / (1 + (1 / q - 1) ** 2)  # noqa: E731
    errors = []
    for seed in range(10):
        rng = np.random.default_rng(seed)
        p_ref, y_ref = _rows(4_000, rng)
        model = fit_cbpe(sharpen(p_ref), y_ref, threshold=0.3)
        assert model.calibration.calibrated
        p, y = _rows(20_000, rng)
        realized = binary_metrics(y, sharpen(p), 0.3).roc_auc.value
        assert expected_auc(sharpen(p), sharpen(p)) > realized + 0.03  # uncalibrated: too high
        errors.append(estimate_performance(model, sharpen(p)).metrics.roc_auc.value - realized)
    assert np.mean(np.abs(errors)) < 0.01 and np.max(np.abs(errors)) < 0.02, errors


def test_expected_auc_matches_brute_force_with_ties() -> None:
    rng = np.random.default_rng(3)
    s, p = rng.random(60).round(1), rng.random(60)
    num = den = 0.0
    for i in range(60):
        for j in range(60):
            if i != j:
                w = p[i] * (1 - p[j])
                den += w
                num += w * (1.0 if s[i] > s[j] else 0.5 if s[i] == s[j] else 0.0)
    assert expected_auc(s, p) == pytest.approx(num / den, rel=1e-12)


@pytest.mark.parametrize("skew", [1.0, 3.0])  # calibrated scores, and scores that need it
def test_estimates_cover_the_realized_metrics_over_many_seeds(skew: float) -> None:
    """Each seed: a fresh reference (so calibration error counts) and a covariate-shifted
    window of 2,000 rows; the 95% intervals must cover the realized value in >= 90% of seeds
    on average over the metrics, and in >= 85% for each (40 seeds: sampling noise)."""
    covered: dict[str, int] = {}
    errors = []
    seeds = 40
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        p_ref, y_ref = _rows(4_000, rng)
        model = fit_cbpe(p_ref**skew, y_ref, threshold=0.4**skew, value=KNOBS, seed=seed)
        p, y = _rows(2_000, rng, a=2.6, b=5.0)  # a covariate shift: more high-risk rows
        scores = p**skew
        est = estimate_performance(model, scores)
        real = metric_items(binary_metrics(y, scores, model.threshold))
        for name, e in metric_items(est.metrics).items():
            covered[name] = covered.get(name, 0) + e.covers(real[name].value)
        errors.append(abs(est.metrics.roc_auc.value - real["roc_auc"].value))
        value = expected_value(y, scores, model.threshold, **vars(KNOBS))
        covered["value"] = covered.get("value", 0) + est.value.covers(value)
    assert np.mean(errors) <= 0.02
    assert np.mean(list(covered.values())) / seeds >= 0.9, covered
    for name, hits in covered.items():
        assert hits / seeds >= 0.85, (name, hits)


def test_intervals_are_informative_and_shrink_with_rows() -> None:
    rng = np.random.default_rng(5)
    p, y = _rows(5_000, rng)
    model = fit_cbpe(p, y, threshold=0.4)
    small = estimate_performance(model, p[:500]).metrics.roc_auc
    large = estimate_performance(model, p).metrics.roc_auc
    # calibration error (a 5,000-row reference) puts a floor under the width
    assert large.upper - large.lower < 0.06
    assert small.upper - small.lower > 1.5 * (large.upper - large.lower)


def test_a_window_riskier_than_the_reference_is_estimated_so() -> None:
    rng = np.random.default_rng(6)
    p, y = _rows(5_000, rng)
    model = fit_cbpe(p, y, threshold=0.4)
    base = estimate_performance(model, p)
    risky = estimate_performance(model, np.clip(p + 0.3, 0, 1))
    assert risky.confusion.tp > base.confusion.tp
    assert risky.metrics.precision.value > base.metrics.precision.upper
    assert base.value is None  # no value knobs configured


def test_value_knobs_come_from_the_dataset_extras() -> None:
    from schemas import load_dataset

    assert ValueKnobs.from_extras(load_dataset("telco").extras) == KNOBS
    assert ValueKnobs.from_extras({}) is None


def test_the_window_sums_give_the_expected_auc_of_its_rows() -> None:
    """A window's AUC from its sums (the positives' rank sum) is :func:`expected_auc` of its
    rows, ties and repeated rows included; one row has no pair."""
    rng = np.random.default_rng(12)
    s, _ = _rows(3_000, rng)
    s = np.concatenate([np.round(s, 2), s[:50]])
    model = fit_cbpe(s, (rng.random(s.size) < s).astype(float), threshold=0.4)
    estimated = estimate_performance(model, s).metrics.roc_auc.value
    assert estimated == pytest.approx(expected_auc(s, model.calibration.calibrator(s)), rel=1e-12)
    assert estimate_performance(model, s[:1]).metrics.roc_auc is None


def test_an_empty_window_estimates_nothing() -> None:
    rng = np.random.default_rng(7)
    p, y = _rows(1_000, rng)
    est = estimate_performance(fit_cbpe(p, y, threshold=0.4), np.array([]))
    assert est.rows == 0 and est.metrics.roc_auc is None


def test_the_sampling_error_matches_simulated_label_draws_with_repeated_rows() -> None:
    """The closed-form standard errors against the spread of each realized metric over
    simulated label draws; a repeated row (same score) has one label, as in a resampled
    window."""
    rng = np.random.default_rng(8)
    s = rng.beta(2, 5, 700)[rng.integers(0, 700, 2_000)]
    w = _window(s, 0.4)
    closed = _sampling_std(w, w.scores, KNOBS)
    _, row_group = np.unique(s, return_inverse=True)
    draws: dict[str, list[float]] = {k: [] for k in closed}
    for _ in range(800):  # the spread of a standard deviation over 800 draws: ~2.5%
        y = (rng.random(w.scores.size) < w.scores).astype(float)[row_group]
        for name, e in metric_items(binary_metrics(y, s, 0.4)).items():
            draws[name].append(e.value)
        draws["value"].append(expected_value(y, s, 0.4, **vars(KNOBS)))
    for name, std in closed.items():
        assert std == pytest.approx(np.std(draws[name]), rel=0.1), name
    # each repeated row drawn on its own would understate the spread
    alone = _sampling_std(_window(s + rng.normal(0, 1e-9, s.size), 0.4), np.sort(s), KNOBS)
    assert alone["roc_auc"] < 0.85 * closed["roc_auc"]
