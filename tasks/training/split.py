"""What training data must be, and how it is cut: checks, seeded splits, LightGBM's matrix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import polars as pl

from schemas.base import DatasetSpec
from tasks.evaluate import label_vector
from tasks.features import FeatureSpec, build_features, to_matrix, validate_features
from tasks.ingest.quality import DataQualityFailed

if TYPE_CHECKING:
    from tasks.ingest.compose import IngestResult

VALID_FRACTION = 0.2  # default share of rows for early stopping (TrainConfig's default too)
TEST_FRACTION = 0.2  # default share of rows for the test metrics


class TrainingDataError(ValueError):
    """The training data cannot make a model (no target, one class, too few rows...)."""


class TrainingQualityError(TrainingDataError, DataQualityFailed):
    """The training data broke a data-quality threshold (strict runs refuse it)."""


class Splits(NamedTuple):
    train: pl.DataFrame
    valid: pl.DataFrame
    test: pl.DataFrame


class XY(NamedTuple):
    """A split as LightGBM sees it: feature matrix and label vector."""

    X: np.ndarray
    y: np.ndarray


def check_training_data(frame: pl.DataFrame, dataset: DatasetSpec, min_rows: int) -> None:
    """Raise :class:`TrainingDataError` naming the problem if ``frame`` cannot train a model."""
    if dataset.target not in frame.columns:
        raise TrainingDataError(
            f"training data has no target column {dataset.target!r} "
            f"(dataset {dataset.name!r}; columns: {', '.join(frame.columns)})"
        )
    if frame.height < min_rows:
        raise TrainingDataError(
            f"training data has {frame.height} rows, fewer than the configured minimum "
            f"of {min_rows} (min_rows; `driftloop train --min-rows N` lowers it)"
        )
    missing = [c for c in dataset.feature_columns if c not in frame.columns]
    if missing:
        raise TrainingDataError(f"training data lacks feature columns: {', '.join(missing)}")
    try:
        y = label_vector(frame, dataset)
    except ValueError as exc:
        raise TrainingDataError(f"training data: {exc}") from None
    if dataset.task == "binary":
        n_pos = int(y.sum())
        if n_pos == 0 or n_pos == len(y):
            which = "every" if n_pos else "no"
            raise TrainingDataError(
                f"training data has a single class in {dataset.target!r} ({which} row is the "
                f"positive class {dataset.positive_class!r}); a binary model needs both classes"
            )
    elif dataset.task == "multiclass":
        seen = np.unique(y).astype(int)
        if seen.size < len(dataset.classes):
            absent = [dataset.classes[k] for k in range(len(dataset.classes)) if k not in seen]
            raise TrainingDataError(
                f"training data lacks class(es) {absent} of {dataset.target!r}; a multiclass "
                "model needs rows of every class its contract lists"
            )
    elif np.unique(y).size < 2:
        raise TrainingDataError(f"training data target {dataset.target!r} is constant")


def check_ingested(
    ingested: IngestResult, dataset: DatasetSpec, min_rows: int, strict: bool
) -> None:
    """Refuse an ingest that failed its quality thresholds (when ``strict``) or accepted data
    that cannot train (see :func:`check_training_data`)."""
    if strict and not ingested.quality_passed:
        raise TrainingQualityError(
            "training data failed data-quality checks: " + "; ".join(ingested.quality_failures)
        )
    check_training_data(ingested.accepted, dataset, min_rows)


@dataclass(frozen=True)
class SplitOptions:
    """How a training run checks and cuts its data (``TrainConfig.split_options`` builds it)."""

    seed: int
    min_rows: int
    fail_on_quality: bool
    valid_fraction: float
    test_fraction: float


def training_splits(ingested: IngestResult, dataset: DatasetSpec, options: SplitOptions) -> Splits:
    """The splits of an ingest's accepted rows, once :func:`check_ingested` accepts them."""
    check_ingested(ingested, dataset, options.min_rows, strict=options.fail_on_quality)
    return split_data(
        ingested.accepted, dataset, options.seed, options.valid_fraction, options.test_fraction
    )


def split_data(
    frame: pl.DataFrame,
    dataset: DatasetSpec,
    seed: int,
    valid_fraction: float = VALID_FRACTION,
    test_fraction: float = TEST_FRACTION,
) -> Splits:
    """Seeded train/valid/test: time-ordered (oldest train, newest test) when the dataset has
    an event time, else stratified on the label (binary) or on label quantiles (regression)."""
    n = frame.height
    if dataset.event_time:
        order = frame[dataset.event_time].arg_sort().to_numpy()
    else:
        strata = _strata(label_vector(frame, dataset), dataset.task)
        order = _stratified_order(strata, seed, valid_fraction, test_fraction)
    n_test = max(1, round(n * test_fraction)) if test_fraction > 0 else 0
    n_valid = max(1, round(n * valid_fraction))
    n_train = n - n_test - n_valid
    part = np.empty(n, dtype=np.int8)  # rows keep the frame's order inside each split:
    part[order[:n_train]] = 0  # a filter copies sequentially, a gather at random indices
    part[order[n_train : n_train + n_valid]] = 1  # costs ~3x more (0.8 s on 1M rows)
    part[order[n_train + n_valid :]] = 2
    return Splits(*(frame.filter(pl.Series(part == k)) for k in range(3)))


def _strata(y: np.ndarray, task: str, bins: int = 10) -> np.ndarray:
    if task in ("binary", "multiclass"):
        return y.astype(int)
    edges = np.quantile(y, np.linspace(0, 1, bins + 1)[1:-1])
    return np.searchsorted(edges, y)


def _stratified_order(
    strata: np.ndarray, seed: int, valid_fraction: float, test_fraction: float
) -> np.ndarray:
    """Row order [train..., valid..., test...] with each stratum cut in the same proportions."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "valid": [], "test": []}
    for s in np.unique(strata):
        idx = rng.permutation(np.flatnonzero(strata == s))
        n_test = round(len(idx) * test_fraction)
        n_valid = round(len(idx) * valid_fraction)
        parts["test"].append(idx[:n_test])
        parts["valid"].append(idx[n_test : n_test + n_valid])
        parts["train"].append(idx[n_test + n_valid :])
    return np.concatenate([rng.permutation(np.concatenate(parts[k])) for k in parts])


def to_xy(
    frame: pl.DataFrame, dataset: DatasetSpec, features: FeatureSpec, validate: bool = False
) -> XY:
    """Features (the shared feature function, checked against the features schema when
    ``validate``) and labels of one split."""
    built = build_features(frame, features)
    if validate:
        validate_features(built, features)
    return XY(to_matrix(built), label_vector(frame, dataset))
