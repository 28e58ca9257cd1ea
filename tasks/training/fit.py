"""One LightGBM booster: fixed parameters, native categoricals, early stopping on valid."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np

from schemas.base import DatasetSpec
from tasks.features import FeatureSpec
from tasks.training.split import XY, Splits, to_xy

VALID_METRIC = {"binary": "auc", "multiclass": "multi_logloss", "regression": "l2"}
OBJECTIVE = {"binary": "binary", "multiclass": "multiclass", "regression": "regression"}
EARLY_STOPPING_ROUNDS = 50
MAX_BOOST_ROUNDS = 2000
DEFAULT_BOOST_ROUNDS = 100  # LightGBM's own default, for the untuned baseline


@dataclass(frozen=True)
class FitData:
    """What every fit of one training run shares: the train/valid pair as LightGBM sees it,
    the features (names, categoricals), the task, the seed and the thread count."""

    train: XY
    valid: XY
    features: FeatureSpec
    task: str
    seed: int
    num_threads: int
    num_class: int = 1  # classes of a multiclass task

    def base_params(self) -> dict[str, Any]:
        return base_params(self.task, self.seed, self.num_threads, self.num_class)


def fit_data(
    splits: Splits, dataset: DatasetSpec, features: FeatureSpec, seed: int, num_threads: int
) -> FitData:
    """The train/valid pair of ``splits`` (features checked against their schema)."""
    return FitData(
        train=to_xy(splits.train, dataset, features, validate=True),
        valid=to_xy(splits.valid, dataset, features, validate=True),
        features=features, task=dataset.task, seed=seed, num_threads=num_threads,
        num_class=max(len(dataset.classes), 1),
    )  # fmt: skip


def base_params(task: str, seed: int, num_threads: int, num_class: int = 1) -> dict[str, Any]:
    """Fixed parameters of every fit: objective, metric, determinism, threads (and the class
    count of a multiclass task)."""
    return {
        "objective": OBJECTIVE[task],
        **({"num_class": num_class} if task == "multiclass" else {}),
        "metric": VALID_METRIC[task],
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": num_threads,
        "verbosity": -1,
    }


def complete_params(params: dict[str, Any], task: str) -> dict[str, Any]:
    """Searched parameters as LightGBM takes them (bagging needs a frequency; no class
    weight for regression)."""
    params = dict(params)
    if params.get("bagging_fraction", 1.0) < 1.0:
        params.setdefault("bagging_freq", 1)
    if task != "binary":
        params.pop("scale_pos_weight", None)
    return params


def make_datasets(data: FitData) -> tuple[lgb.Dataset, lgb.Dataset]:
    """LightGBM datasets of the train/valid pair with native categoricals, binned on first use.

    One pair serves every fit whose parameters leave binning alone: all the searched ones
    (``feature_pre_filter`` is off, so ``min_child_samples`` does not touch the bins)."""
    ds_params = {"feature_pre_filter": False, "verbosity": -1}
    names, cats = list(data.features.columns), data.features.categorical_indices
    train, valid = data.train, data.valid
    dtrain = lgb.Dataset(
        train.X, train.y, feature_name=names, categorical_feature=cats, params=ds_params
    )
    dvalid = lgb.Dataset(
        valid.X, valid.y, reference=dtrain, categorical_feature=cats, params=ds_params
    )
    return dtrain, dvalid


def fit_booster(
    params: dict[str, Any],
    data: FitData,
    *,
    max_rounds: int = MAX_BOOST_ROUNDS,
    early_stopping_rounds: int | None = EARLY_STOPPING_ROUNDS,
    callbacks: list[Callable] | None = None,
    init_model: lgb.Booster | None = None,
    evals: dict | None = None,
    datasets: tuple[lgb.Dataset, lgb.Dataset] | None = None,
    keep_training_booster: bool = False,
) -> lgb.Booster:
    """Train one booster with native categoricals and early stopping on ``data.valid``.

    ``evals`` (a dict) receives the per-iteration valid metric; ``init_model`` continues
    training from an existing booster (its trees are kept, new ones are added); ``datasets``
    (from :func:`make_datasets`, without ``init_model``) skips binning ``train``/``valid``
    again; ``keep_training_booster`` skips LightGBM's final model-string round trip (for a
    booster that is only read, not saved).
    """
    full = {**data.base_params(), **complete_params(params, data.task)}
    if datasets is None or init_model is not None:  # init scores need the raw rows per fit
        datasets = make_datasets(data)
    dtrain, dvalid = datasets
    cbs = list(callbacks or [])
    if early_stopping_rounds:
        cbs.append(lgb.early_stopping(early_stopping_rounds, verbose=False))
    if evals is not None:
        cbs.append(lgb.record_evaluation(evals))
    return lgb.train(
        full,
        dtrain,
        num_boost_round=max_rounds,
        valid_sets=[dvalid],
        valid_names=["valid"],
        callbacks=cbs,
        init_model=init_model,
        keep_training_booster=keep_training_booster,
    )


def predict(booster: lgb.Booster, X: np.ndarray, num_threads: int = 1) -> np.ndarray:
    best = booster.best_iteration or None
    return booster.predict(X, num_iteration=best, num_threads=num_threads)


def fit_default(data: FitData, evals: dict | None = None) -> lgb.Booster:
    """The untuned baseline: LightGBM defaults, 100 rounds, no early stopping."""
    return fit_booster(
        {}, data, max_rounds=DEFAULT_BOOST_ROUNDS, early_stopping_rounds=None, evals=evals
    )


def valid_score(booster: lgb.Booster, task: str) -> float:
    """The booster's valid-split metric at its best iteration (its last without early stop)."""
    return float(booster.best_score["valid"][VALID_METRIC[task]])
