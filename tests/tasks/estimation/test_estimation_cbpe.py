"""CBPE: calibration that helps or stays out, expected metrics that match realized ones on
synthetic calibrated scores within their intervals, closed-form sampling errors that match
simulated label draws."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.estimation.calibration import fit_calibration, fit_isotonic
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


def test_isotonic_pools_adjacent_violators() -> None:
    cal = fit_isotonic(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 0.0, 1.0, 1.0]))
    assert cal(np.array([1.0, 2.0, 3.0, 4.0])).tolist() == [0.5, 0.5, 1.0, 1.0]
    assert cal(np.array([2.5])).tolist() == [0.75]  # linear between blocks


def test_isotonic_is_monotone_and_keeps_the_mean() -> None:
    rng = np.random.default_rng(1)
    s, y = _rows(2_000, rng)
    fitted = fit_isotonic(s, y)(s)
    assert np.all(np.diff(fitted[np.argsort(s)]) >= -1e-12)
    assert fitted.mean() == pytest.approx(y.mean(), abs=1e-9)


def test_calibration_is_kept_only_when_it_helps() -> None:
    rng = np.random.default_rng(2)
    p, y = _rows(4_000, rng)
    skewed = fit_calibration(p**3, y)  # ranks right, probabilities far too low
    assert skewed.calibrated and skewed.ece_calibrated < skewed.ece_raw
    overconfident = fit_calibration(1 / (1 + (1 / p - 1) ** 2), y)  # logit doubled
    assert overconfident.calibrated
    # already calibrated: isotonic rarely helps on a small reference, and stays near identity
    kept = [fit_calibration(*_rows(300, np.random.default_rng(s))).calibrated for s in range(20)]
    assert sum(kept) <= 8
    near = fit_calibration(p, y).calibrator
    assert np.mean(np.abs(near(p) - p)) < 0.03  # isotonic steps on 4,000 rows


def test_calibration_corrects_an_overconfident_auc_estimate() -> None:
    """Over-confident scores (an over-fitted model) inflate the expected AUC; calibration on the
    reference brings it back to the realized one."""
    rng = np.random.default_rng(9)
    p_ref, y_ref = _rows(4_000, rng)
    sharpen = lambda q: 1 / (1 + (1 / q - 1) ** 2)  # noqa: E731
    model = fit_cbpe(sharpen(p_ref), y_ref, threshold=0.3)
    p, y = _rows(20_000, rng)
    realized = binary_metrics(y, sharpen(p), 0.3).roc_auc.value
    assert expected_auc(sharpen(p), sharpen(p)) > realized + 0.03  # uncalibrated: too high
    assert estimate_performance(model, sharpen(p)).metrics.roc_auc.value == pytest.approx(
        realized, abs=0.01
    )


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
