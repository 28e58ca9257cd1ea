"""Direct loss estimation (DLE) for regression models: MAE and RMSE without labels.

Fit on held-out reference rows (features, the champion's prediction, the target): two small
LightGBM models, of the absolute and of the squared error, from the features and the
prediction. On a window, the estimated MAE is the mean predicted absolute error and the RMSE
the root of the mean predicted squared error. The interval is the sampling error of the
realized value (the out-of-fold residual variance of each error model, from a cross-fit on the
reference, over the window's row count) combined with the error models' own uncertainty: the
spread of the estimate under error models fitted on bootstrap resamples of the reference
(measured on at most ``_BOOT_ROWS`` window rows).

Like CBPE, valid while P(target | inputs) holds; :mod:`tasks.estimation.trust` checks that.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from tasks.estimation.layout import ColumnLayout
from tasks.estimation.stats import CONFIDENCE, RegressionMetrics, normal
from tasks.trees import SmallTrees

if TYPE_CHECKING:
    import lightgbm as lgb

_BOOT_ROWS = 5_000


@dataclass(frozen=True)
class DLEConfig:
    trees: SmallTrees = SmallTrees(num_trees=60, learning_rate=0.05, min_data_in_leaf=30)
    folds: int = 2  # cross-fit for the residual variance
    bootstraps: int = 8  # error models on resampled reference rows (model uncertainty)
    seed: int = 0


@dataclass(frozen=True)
class DLEModel:
    layout: ColumnLayout  # the error models read these columns, then the prediction
    abs_model: lgb.Booster
    sq_model: lgb.Booster
    abs_residual_var: float  # out-of-fold variance of |error| around its model
    sq_residual_var: float
    bootstraps: tuple[tuple[lgb.Booster, lgb.Booster], ...]  # (abs, sq) pairs


@dataclass(frozen=True)
class DLEResult:
    rows: int
    metrics: RegressionMetrics


def _matrix(features: pl.DataFrame, predictions: np.ndarray, layout: ColumnLayout):
    return np.column_stack([layout.matrix(features), np.asarray(predictions, dtype=np.float64)])


def _train(x, target, cat_idx, config: DLEConfig, seed: int) -> lgb.Booster:
    import lightgbm as lgb

    data = lgb.Dataset(x, target, categorical_feature=cat_idx, free_raw_data=True)
    return config.trees.train("regression", data, seed)


def fit_dle(
    features: pl.DataFrame,
    predictions: np.ndarray,
    targets: np.ndarray,
    *,
    categorical: tuple[str, ...] = (),
    config: DLEConfig | None = None,
) -> DLEModel:
    """Fit the error models on held-out reference rows (encoded features, as
    ``tasks.features.build_features`` makes them)."""
    config = config or DLEConfig()
    layout = ColumnLayout.of(features, categorical)
    cat_idx = layout.categorical_index
    x = _matrix(features, predictions, layout)
    err = np.asarray(targets, dtype=np.float64) - np.asarray(predictions, dtype=np.float64)
    abs_err, sq_err = np.abs(err), err**2
    rng = np.random.default_rng(config.seed)
    fold = rng.permutation(err.size) % config.folds
    oof_abs, oof_sq = np.empty_like(err), np.empty_like(err)
    for k in range(config.folds):
        held = fold == k
        oof_abs[held] = _train(x[~held], abs_err[~held], cat_idx, config, k).predict(x[held])
        oof_sq[held] = _train(x[~held], sq_err[~held], cat_idx, config, k).predict(x[held])
    return DLEModel(
        layout,
        _train(x, abs_err, cat_idx, config, config.seed),
        _train(x, sq_err, cat_idx, config, config.seed),
        float(np.var(abs_err - oof_abs)),
        float(np.var(sq_err - oof_sq)),
        tuple(
            (
                _train(x[i], abs_err[i], cat_idx, config, b),
                _train(x[i], sq_err[i], cat_idx, config, b),
            )
            for b, i in enumerate(rng.integers(0, err.size, (config.bootstraps, err.size)))
        ),
    )


def _bootstrap_spread(model: DLEModel, x: np.ndarray) -> tuple[float, float]:
    """Standard deviations of the MAE and RMSE estimates over the bootstrap error models."""
    if len(model.bootstraps) < 2:
        return 0.0, 0.0
    if x.shape[0] > _BOOT_ROWS:
        x = x[np.random.default_rng(0).choice(x.shape[0], _BOOT_ROWS, replace=False)]
    maes, rmses = [], []
    for abs_model, sq_model in model.bootstraps:
        maes.append(np.clip(abs_model.predict(x, num_threads=1), 0, None).mean())
        rmses.append(math.sqrt(np.clip(sq_model.predict(x, num_threads=1), 0, None).mean()))
    return float(np.std(maes, ddof=1)), float(np.std(rmses, ddof=1))


def estimate_loss(
    model: DLEModel,
    features: pl.DataFrame,
    predictions: np.ndarray,
    *,
    confidence: float = CONFIDENCE,
) -> DLEResult:
    """Estimated MAE and RMSE of the champion on a window (features and predictions only)."""
    n = features.height
    if n == 0:
        return DLEResult(0, RegressionMetrics(None, None))
    x = _matrix(features, predictions, model.layout)
    abs_hat = np.clip(model.abs_model.predict(x, num_threads=1), 0, None)
    sq_hat = np.clip(model.sq_model.predict(x, num_threads=1), 0, None)
    mae = float(abs_hat.mean())
    rmse = math.sqrt(float(sq_hat.mean()))
    boot_mae, boot_rmse = _bootstrap_spread(model, x)
    mse_std = math.sqrt(model.sq_residual_var / n)
    rmse_std = math.hypot(mse_std / (2 * rmse) if rmse > 0 else 0.0, boot_rmse)
    mae_std = math.hypot(math.sqrt(model.abs_residual_var / n), boot_mae)
    mae_est = normal(mae, mae_std, confidence, lo=0)
    return DLEResult(n, RegressionMetrics(mae_est, normal(rmse, rmse_std, confidence, lo=0)))


def dle_to_json(model: DLEModel) -> dict[str, Any]:
    """The fitted state as plain JSON types (LightGBM model text, never code)."""
    return {
        **model.layout.to_json(),
        "abs_model": model.abs_model.model_to_string(),
        "sq_model": model.sq_model.model_to_string(),
        "abs_residual_var": model.abs_residual_var,
        "sq_residual_var": model.sq_residual_var,
        "bootstraps": [[a.model_to_string(), s.model_to_string()] for a, s in model.bootstraps],
    }


def dle_from_json(doc: Mapping[str, Any]) -> DLEModel:
    import lightgbm as lgb

    def booster(text: str) -> lgb.Booster:
        return lgb.Booster(model_str=text)  # predictions ask for one thread themselves

    return DLEModel(
        ColumnLayout.from_json(doc),
        booster(doc["abs_model"]),
        booster(doc["sq_model"]),
        float(doc["abs_residual_var"]),
        float(doc["sq_residual_var"]),
        tuple((booster(a), booster(s)) for a, s in doc["bootstraps"]),
    )
