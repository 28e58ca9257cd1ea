"""DLE: estimated MAE and RMSE cover the realized values on a synthetic regression whose error
grows with one feature, and follow a shift towards the rows where the model errs more."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from tasks.estimation.dle import estimate_loss, fit_dle
from tasks.estimation.realized import regression_metrics


def _rows(n: int, rng: np.random.Generator, shift: float = 0.0):
    """y = 2 x1 + x2 + noise, the noise growing with |x1|; the champion predicts 2 x1 + x2."""
    x1, x2 = rng.normal(shift, 1, n), rng.normal(0, 1, n)
    pred = 2 * x1 + x2
    y = pred + rng.normal(0, 0.3 + np.abs(x1), n)
    return pl.DataFrame({"x1": x1, "x2": x2}), pred, y


@pytest.fixture(scope="module")
def model():
    features, pred, y = _rows(4_000, np.random.default_rng(0))
    return fit_dle(features, pred, y)


@pytest.mark.parametrize("shift", [0.0, 0.7])
def test_estimates_cover_the_realized_loss(model, shift: float) -> None:
    seeds, hits_mae, hits_rmse, errors = 25, 0, 0, []
    for seed in range(seeds):
        features, pred, y = _rows(2_000, np.random.default_rng(100 + seed), shift)
        est = estimate_loss(model, features, pred).metrics
        real = regression_metrics(y, pred)
        hits_mae += est.mae.covers(real.mae.value)
        hits_rmse += est.rmse.covers(real.rmse.value)
        errors.append(abs(est.mae.value - real.mae.value) / real.mae.value)
    assert hits_mae / seeds >= 0.85 and hits_rmse / seeds >= 0.85, (hits_mae, hits_rmse)
    assert np.mean(errors) < 0.05


def test_a_shift_towards_harder_rows_raises_the_estimate(model) -> None:
    rng = np.random.default_rng(1)
    base = estimate_loss(model, *_rows(2_000, rng)[:2]).metrics.mae
    harder = estimate_loss(model, *_rows(2_000, rng, shift=1.5)[:2]).metrics.mae
    assert harder.lower > base.upper


def test_an_empty_window_estimates_nothing(model) -> None:
    features, pred, _ = _rows(0, np.random.default_rng(2))
    result = estimate_loss(model, features, pred)
    assert result.rows == 0 and result.metrics.mae is None
