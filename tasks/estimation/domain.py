"""Multivariate drift by a domain classifier: can a model tell window rows from reference rows?

A small LightGBM model separates reference rows (label 0) from window rows (label 1); its
cross-validated (out-of-fold) ROC AUC is 0.5 when the two come from one distribution, and rises
with any difference it can learn, including a change in how features move together while every
marginal stays the same. The threshold is calibrated at fit time on reference-against-reference
splits: the null AUC's deviation from 0.5, in units of the Mann-Whitney null standard error
(so one calibration serves any window size), as mean + ``k`` standard deviations. The features
that drive a separation are the classifier's gain shares.

Inputs are encoded feature frames (``tasks.features.build_features``: every column numeric,
categorical ones as codes named in ``categorical``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import polars as pl

from tasks.estimation.layout import ColumnLayout
from tasks.metrics import roc_auc
from tasks.trees import SmallTrees


@dataclass(frozen=True)
class DomainConfig:
    folds: int = 3
    max_rows: int = 5_000  # per side, subsampled at random beyond this (speed)
    null_splits: int = 8  # reference-against-reference splits calibrating the threshold
    k_sigma: float = 3.0  # threshold = null mean + k_sigma null standard deviations
    trees: SmallTrees = SmallTrees(num_trees=40, learning_rate=0.1, min_data_in_leaf=40)
    top_features: int = 5
    seed: int = 0


@dataclass(frozen=True)
class DomainReference:
    """The fitted reference: its columns, its rows (capped), and the calibrated null deviation."""

    layout: ColumnLayout
    rows: np.ndarray
    null_mean: float  # mean of (AUC - 0.5) / null standard error over the splits
    null_std: float  # their standard deviation (at least 1: a handful of splits underestimates)
    config: DomainConfig


@dataclass(frozen=True)
class FeatureGain:
    feature: str
    share: float  # of the classifier's total gain


@dataclass(frozen=True)
class DomainDrift:
    auc: float
    threshold: float
    drifted: bool
    reference_rows: int
    window_rows: int
    top_features: tuple[FeatureGain, ...]


def _null_se(n1: float, n2: float) -> float:
    """Standard error of the Mann-Whitney AUC when both samples share one distribution."""
    return math.sqrt((n1 + n2 + 1) / (12 * n1 * n2))


def _effective_rows(x: np.ndarray) -> float:
    """Kish's effective sample size over identical rows: a window resampled from few rows
    carries less evidence than its row count (and its AUC varies more under the null)."""
    _, counts = np.unique(np.nan_to_num(x, nan=np.inf), axis=0, return_counts=True)
    return float(x.shape[0] ** 2 / np.sum(counts.astype(np.float64) ** 2))


def _cap(x: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    return x[rng.choice(x.shape[0], cap, replace=False)] if x.shape[0] > cap else x


def _group_folds(x: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """A fold per row, identical rows sharing one: a resampled window repeats rows, and a copy
    on each side of a fold boundary would let the classifier tell the window by memory."""
    _, group = np.unique(np.nan_to_num(x, nan=np.inf), axis=0, return_inverse=True)
    group = group.ravel()
    return np.random.default_rng(seed).permutation(group.max() + 1)[group] % folds


def _cross_validated_auc(
    a: np.ndarray, b: np.ndarray, cat_idx: list[int], config: DomainConfig, seed: int
) -> tuple[float, np.ndarray]:
    """Out-of-fold AUC of separating ``b`` (1) from ``a`` (0), and the summed gain per feature."""
    import lightgbm as lgb

    x = np.vstack([a, b])
    y = np.r_[np.zeros(a.shape[0]), np.ones(b.shape[0])]
    fold = _group_folds(x, config.folds, seed)
    oof = np.empty(y.size)
    gain = np.zeros(x.shape[1])
    for k in range(config.folds):
        held = fold == k
        data = lgb.Dataset(x[~held], y[~held], categorical_feature=cat_idx, free_raw_data=True)
        booster = config.trees.train("binary", data, seed)
        oof[held] = booster.predict(x[held], raw_score=True)
        gain += booster.feature_importance("gain")
    return roc_auc(y, oof), gain


def fit_domain_classifier(
    reference: pl.DataFrame,
    *,
    categorical: tuple[str, ...] = (),
    config: DomainConfig | None = None,
) -> DomainReference:
    """Keep (a capped sample of) the reference rows and calibrate the null AUC on them."""
    config = config or DomainConfig()
    layout = ColumnLayout.of(reference, categorical)
    rng = np.random.default_rng(config.seed)
    rows = _cap(layout.matrix(reference), config.max_rows, rng)  # rng's first draw
    cat_idx = layout.categorical_index
    half = rows.shape[0] // 2
    deviations = []
    for split in range(config.null_splits):
        order = rng.permutation(rows.shape[0])
        a, b = rows[order[:half]], rows[order[half : 2 * half]]
        auc, _ = _cross_validated_auc(a, b, cat_idx, config, config.seed + split)
        deviations.append((auc - 0.5) / _null_se(_effective_rows(a), _effective_rows(b)))
    dev = np.asarray(deviations)
    null_std = max(1.0, float(dev.std(ddof=1))) if dev.size > 1 else 1.0
    return DomainReference(layout, rows, float(dev.mean()), null_std, config)


def _settings(config: DomainConfig) -> Any:
    return json.loads(json.dumps(asdict(config)))


def domain_to_json(fitted: DomainReference) -> dict[str, Any]:
    """The calibrated null and the settings it holds for; the rows come back from the
    reference itself."""
    return {**fitted.layout.to_json(),
            "null_mean": fitted.null_mean, "null_std": fitted.null_std,
            "config": _settings(fitted.config)}  # fmt: skip


def domain_from_json(
    doc: Mapping[str, Any], reference: pl.DataFrame, config: DomainConfig | None = None
) -> DomainReference:
    """:func:`fit_domain_classifier`'s result again, from its JSON and the same reference;
    a ValueError if it was calibrated under other settings than ``config`` (a refit is due)."""
    config = config or DomainConfig()
    if doc["config"] != _settings(config):
        raise ValueError("the domain classifier was calibrated under other settings")
    layout = ColumnLayout.from_json(doc)
    rows = _cap(layout.matrix(reference), config.max_rows, np.random.default_rng(config.seed))
    null_mean, null_std = float(doc["null_mean"]), float(doc["null_std"])
    return DomainReference(layout, rows, null_mean, null_std, config)


def domain_drift(fitted: DomainReference, window: pl.DataFrame) -> DomainDrift:
    """Cross-validated AUC of reference rows against ``window`` rows, against the threshold."""
    config = fitted.config
    rng = np.random.default_rng(config.seed + 7919)
    cur = _cap(fitted.layout.matrix(window), config.max_rows, rng)
    ref = fitted.rows
    auc, gain = _cross_validated_auc(ref, cur, fitted.layout.categorical_index, config, config.seed)
    se = _null_se(_effective_rows(ref), _effective_rows(cur))
    threshold = 0.5 + (fitted.null_mean + config.k_sigma * fitted.null_std) * se
    shares = gain / gain.sum() if gain.sum() > 0 else gain
    top = np.argsort(-shares, kind="stable")[: config.top_features]
    names = fitted.layout.columns
    features = tuple(FeatureGain(names[i], float(shares[i])) for i in top if shares[i] > 0)
    return DomainDrift(auc, threshold, auc > threshold, ref.shape[0], cur.shape[0], features)
