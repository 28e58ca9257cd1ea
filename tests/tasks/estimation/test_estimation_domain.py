"""The domain classifier sees a correlation flip that no marginal shows, and stays quiet on
fresh samples of the reference's distribution."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from schemas.base import DatasetSpec
from tasks.estimation.domain import DomainConfig, domain_drift, fit_domain_classifier
from tasks.features import FeatureSpec, build_features
from tasks.simulate import DriftSpec, inject_drift

SEEDS = range(5)


@pytest.fixture(scope="module")
def fitted(synthetic: DatasetSpec, rows):
    features = FeatureSpec.from_dataset(synthetic)
    reference, _ = rows(4_000, seed=1_000)
    ref = fit_domain_classifier(
        build_features(reference, features), categorical=tuple(features.categories)
    )
    return ref, features


def _window(rows, synthetic: DatasetSpec, seed: int, kind: str) -> pl.DataFrame:
    frame, _ = rows(5_000, seed=seed)
    return inject_drift(frame, synthetic, DriftSpec(kind, column="a", severity=0.5, seed=seed))


def test_a_correlation_flip_is_flagged_with_unchanged_marginals(fitted, synthetic, rows) -> None:
    ref, features = fitted
    for seed in SEEDS:
        clean = _window(rows, synthetic, seed, "none")
        flipped = _window(rows, synthetic, seed, "correlation_flip")
        for col in ("a", "b", "c"):  # every marginal exactly the same
            assert np.array_equal(np.sort(clean[col].to_numpy()), np.sort(flipped[col].to_numpy()))
        result = domain_drift(ref, build_features(flipped, features))
        assert result.drifted, (seed, result)
        assert result.top_features[0].feature in {"a", "b"}


def test_fresh_samples_of_the_reference_distribution_are_quiet(fitted, synthetic, rows) -> None:
    ref, features = fitted
    aucs = []
    for seed in SEEDS:
        result = domain_drift(ref, build_features(_window(rows, synthetic, seed, "none"), features))
        assert not result.drifted, (seed, result)
        aucs.append(result.auc)
    assert abs(np.mean(aucs) - 0.5) < 0.02


def test_resampled_windows_with_repeated_rows_are_quiet(fitted, rows) -> None:
    """Windows drawn with replacement from few rows repeat rows; a classifier that saw a copy
    in training would recognise the other copy: identical rows share a fold."""
    ref, features = fitted
    pool, _ = rows(1_500, seed=77)
    for seed in SEEDS:
        idx = np.random.default_rng(seed).choice(pool.height, 5_000, replace=True)
        assert not domain_drift(ref, build_features(pool[idx], features)).drifted, seed


def test_missing_feature_columns_are_a_clear_error(fitted) -> None:
    ref, _ = fitted
    with pytest.raises(ValueError, match="lacks feature columns"):
        domain_drift(ref, pl.DataFrame({"a": [1.0]}))


def test_the_threshold_tightens_with_more_rows(synthetic, rows) -> None:
    reference, _ = rows(2_000, seed=5)
    features = FeatureSpec.from_dataset(synthetic)
    ref = fit_domain_classifier(
        build_features(reference, features).drop("seg"), config=DomainConfig(null_splits=4)
    )
    small = domain_drift(ref, build_features(rows(300, 6)[0], features))
    large = domain_drift(ref, build_features(rows(3_000, 6)[0], features))
    assert small.threshold > large.threshold > 0.5
