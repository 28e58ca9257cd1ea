"""The trained model of one run: tuned on train/valid, refit, with the untuned baseline
beside it; and the held-out splits scored once each, as serving will score."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl

from schemas.base import DatasetSpec
from tasks.features import FeatureSpec
from tasks.training.distributed import tune_on_workers
from tasks.training.fit import (
    complete_params,
    fit_booster,
    fit_data,
    fit_default,
    predict,
    valid_score,
)
from tasks.training.space import default_search_params
from tasks.training.split import Splits, to_xy
from tasks.training.tune import DIRECTION, TuneOptions, TuneResult, tune

REFERENCE_ROWS = 100_000  # plenty for drift statistics


@dataclass
class TrainedModel:
    """The tuned model, the untuned baseline on the same split, and how they were found."""

    booster: lgb.Booster
    baseline: lgb.Booster
    params: dict[str, Any]
    tuning: TuneResult
    evals: dict[str, Any]
    best_iteration: int
    untuned_kept: bool = False  # the untuned model beat the tuned one on valid: it is the model

    def importance(self) -> dict[str, float]:
        gains = self.booster.feature_importance("gain", iteration=self.best_iteration or None)
        names = self.booster.feature_name()
        return dict(sorted(zip(names, map(float, gains), strict=True), key=lambda kv: -kv[1]))


def train_model(
    splits: Splits,
    dataset: DatasetSpec,
    features: FeatureSpec,
    options: TuneOptions,
    *,
    warm_params: list[dict[str, Any]] | None = None,
    init_model: lgb.Booster | None = None,
    on_trial: Callable[[dict[str, Any]], None] | None = None,
) -> TrainedModel:
    """Tune on train/valid, refit the best parameters, and fit the untuned baseline.

    The study starts from ``warm_params`` (e.g. the champion's), then LightGBM's defaults, so
    tuning can only match or beat the untuned model on the valid split."""
    data = fit_data(splits, dataset, features, options.seed, options.num_threads)
    warm = [*(warm_params or []), default_search_params()]
    if options.distributed is not None:  # trials on the tune-worker deployment's runs
        if init_model is not None:
            raise ValueError("init_model cannot be combined with tune_workers > 1")
        tuning = tune_on_workers(options.distributed, data, storage=options.storage,
                                 warm_params=warm)  # fmt: skip
        for row in tuning.trials if on_trial is not None else []:
            on_trial(row)
    else:
        tuning = tune(
            data, trials=options.trials, timeout_s=options.timeout_s, storage=options.storage,
            study_name=options.study_name, pruning=options.pruning, warm_params=warm,
            n_jobs=options.n_jobs, init_model=init_model, on_trial=on_trial,
        )  # fmt: skip
    evals: dict[str, Any] = {}
    booster = fit_booster(tuning.best_params, data, init_model=init_model, evals=evals)
    baseline_evals: dict[str, Any] = {}
    baseline = fit_default(data, evals=baseline_evals)
    if init_model is None and _better(baseline, booster, dataset.task):
        params = {**data.base_params(), **complete_params({}, dataset.task)}
        iteration = baseline.current_iteration()
        return TrainedModel(baseline, baseline, params, tuning, baseline_evals, iteration, True)
    params = {**data.base_params(), **complete_params(tuning.best_params, dataset.task)}
    return TrainedModel(booster, baseline, params, tuning, evals, booster.best_iteration)


def _better(a: lgb.Booster, b: lgb.Booster, task: str) -> bool:
    """Whether ``a`` is strictly better than ``b`` on the valid split: the tuned model is kept
    unless the untuned one beats it there, so tuning never ships a worse model than none."""
    score_a, score_b = valid_score(a, task), valid_score(b, task)
    return score_a > score_b if DIRECTION[task] == "maximize" else score_a < score_b


@dataclass
class Scored:
    """Labels and scores of the valid and test splits (and the baseline's test scores), the
    test rows (for slices), and the reference rows (a bounded sample of the held-out valid +
    test rows) with their scores."""

    valid_y: np.ndarray
    valid_scores: np.ndarray
    test_y: np.ndarray
    test_scores: np.ndarray
    baseline_scores: np.ndarray
    reference: pl.DataFrame
    reference_scores: np.ndarray
    test_frame: pl.DataFrame


def score_splits(
    model: TrainedModel,
    splits: Splits,
    dataset: DatasetSpec,
    features: FeatureSpec,
    seed: int = 0,
    reference_rows: int = REFERENCE_ROWS,
) -> Scored:
    """Score the held-out splits once each, with the shared feature function, as serving will.

    The drift reference is a sample of the held-out rows with the scores already made for
    them: production scores rows the model never trained on, so held-out scores are the
    distribution to compare them with (training rows score more confidently), and no row is
    scored twice (on 1M rows, scoring a separate training sample cost ~1 s)."""
    threads = int(model.params.get("num_threads", 1))
    valid, test = to_xy(splits.valid, dataset, features), to_xy(splits.test, dataset, features)
    valid_scores = predict(model.booster, valid.X, threads)
    test_scores = predict(model.booster, test.X, threads)
    reference, reference_scores = _held_out_sample(
        splits, np.concatenate([valid_scores, test_scores]), reference_rows, seed
    )
    return Scored(
        valid_y=valid.y,
        valid_scores=valid_scores,
        test_y=test.y,
        test_scores=test_scores,
        baseline_scores=predict(model.baseline, test.X, threads),
        reference=reference,
        reference_scores=reference_scores,
        test_frame=splits.test,
    )


def _held_out_sample(
    splits: Splits, scores: np.ndarray, rows: int, seed: int
) -> tuple[pl.DataFrame, np.ndarray]:
    """At most ``rows`` of valid + test (in that order, as ``scores`` is), seeded."""
    n_valid, n = splits.valid.height, splits.valid.height + splits.test.height
    keep = np.arange(n)
    if n > rows:
        keep = np.sort(np.random.default_rng(seed).choice(n, size=rows, replace=False))
    in_valid = keep < n_valid
    frame = pl.concat([splits.valid[keep[in_valid]], splits.test[keep[~in_valid] - n_valid]])
    return frame, scores[keep]
