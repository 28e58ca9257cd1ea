"""Drift injection, for demos, tests and fire drills, on any dataset.

Each kind takes a frame typed by the dataset's contract and returns a drifted copy with the
same columns (except ``schema_break``, which breaks the contract on purpose):

- ``covariate``: numeric features shifted by ``severity`` standard deviations, and the
  categorical features' mix tilted towards one category;
- ``prior``: the positive rate moved by resampling rows (label shift);
- ``concept``: the label's relationship to a feature changed by a rule: in the top half of
  ``column`` labels flip with probability ``severity`` (the world changed; a retrain can learn it);
- ``label_noise``: labels replaced by coin flips at the base rate (nothing left to learn);
- ``missing``: a burst of missing values in a few feature columns;
- ``schema_break``: a column renamed, one dropped, and text written into a numeric column.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

from schemas.base import DatasetSpec

Kind = Literal["covariate", "prior", "concept", "label_noise", "missing", "schema_break"]
KINDS: tuple[str, ...] = Kind.__args__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class DriftSpec:
    kind: Kind
    severity: float = 0.5
    column: str | None = None  # the feature a rule uses (default: chosen from the contract)
    seed: int = 0


def _label_is_positive(frame: pl.DataFrame, dataset: DatasetSpec) -> np.ndarray:
    return (frame[dataset.target] == dataset.positive_class).fill_null(False).to_numpy()


def _with_labels(frame: pl.DataFrame, dataset: DatasetSpec, positive: np.ndarray) -> pl.DataFrame:
    if dataset.task != "binary":
        raise ValueError("label drift kinds need a binary dataset")
    classes = [
        c
        for c in dataset.columns[dataset.target].categories or ()
        if c != str(dataset.positive_class)
    ]
    negative = classes[0] if classes else 0
    values = np.where(positive, dataset.positive_class, negative)
    return frame.with_columns(pl.Series(dataset.target, values).cast(frame.schema[dataset.target]))


def _default_numeric(dataset: DatasetSpec) -> str:
    numeric = [c for c in dataset.numeric_features if dataset.columns[c].dtype.is_float()]
    numeric = numeric or dataset.numeric_features
    if not numeric:
        raise ValueError(f"dataset {dataset.name!r} has no numeric feature; pass --column")
    return numeric[0]


def _keep_valid(shifted: pl.DataFrame, original: pl.DataFrame, dataset: DatasetSpec):
    """Rows the shift made break the contract (e.g. a cross-column rule) keep their values:
    drift moves the data, it does not corrupt it (that is what ``schema_break`` is for)."""
    import pandera.polars as pa

    try:
        dataset.model.validate(shifted, lazy=True)
        return shifted
    except pa.errors.SchemaErrors as exc:
        bad = exc.failure_cases["index"].drop_nulls().unique()
    mask = pl.Series(np.isin(np.arange(shifted.height), bad.to_numpy()))
    return shifted.with_columns(
        pl.when(mask).then(original[c]).otherwise(pl.col(c)).alias(c) for c in shifted.columns
    )


def covariate_shift(frame: pl.DataFrame, dataset: DatasetSpec, spec: DriftSpec) -> pl.DataFrame:
    rng = np.random.default_rng(spec.seed)
    out = frame
    for col in dataset.numeric_features:
        info = dataset.columns[col]
        std = frame[col].cast(pl.Float64).std() or 1.0
        shifted = pl.col(col).cast(pl.Float64) + spec.severity * std
        if info.max_value is not None:
            shifted = shifted.clip(upper_bound=info.max_value)
        out = out.with_columns(shifted.cast(info.dtype).alias(col))
    out = _keep_valid(out, frame, dataset)
    cats = dataset.categorical_features
    if cats:
        # tilt the row mix towards the rows holding the first category of the first feature
        col = spec.column if spec.column in cats else cats[0]
        favoured = (frame[col] == dataset.columns[col].categories[0]).fill_null(False).to_numpy()
        weights = np.where(favoured, 1.0 + 4 * spec.severity, 1.0)
        idx = rng.choice(frame.height, frame.height, replace=True, p=weights / weights.sum())
        out = out[idx]
    return out


def prior_shift(frame: pl.DataFrame, dataset: DatasetSpec, spec: DriftSpec) -> pl.DataFrame:
    rng = np.random.default_rng(spec.seed)
    positive = _label_is_positive(frame, dataset)
    weights = np.where(positive, 1.0 + 4 * spec.severity, 1.0)
    idx = rng.choice(frame.height, frame.height, replace=True, p=weights / weights.sum())
    return frame[idx]


def concept_drift(frame: pl.DataFrame, dataset: DatasetSpec, spec: DriftSpec) -> pl.DataFrame:
    rng = np.random.default_rng(spec.seed)
    col = spec.column or _default_numeric(dataset)
    values = frame[col]
    if dataset.columns[col].is_categorical:
        rule = (values == dataset.columns[col].categories[0]).fill_null(False).to_numpy()
    else:
        rule = (values.cast(pl.Float64) > values.cast(pl.Float64).median()).fill_null(False)
        rule = rule.to_numpy()
    positive = _label_is_positive(frame, dataset)
    flip = rule & (rng.random(frame.height) < spec.severity)
    return _with_labels(frame, dataset, np.where(flip, ~positive, positive))


def label_noise(frame: pl.DataFrame, dataset: DatasetSpec, spec: DriftSpec) -> pl.DataFrame:
    rng = np.random.default_rng(spec.seed)
    base_rate = _label_is_positive(frame, dataset).mean()
    return _with_labels(frame, dataset, rng.random(frame.height) < base_rate)


def missing_burst(frame: pl.DataFrame, dataset: DatasetSpec, spec: DriftSpec) -> pl.DataFrame:
    rng = np.random.default_rng(spec.seed)
    cols = [spec.column] if spec.column else dataset.feature_columns[:3]
    out = frame
    for col in cols:
        mask = pl.Series(rng.random(frame.height) < spec.severity)
        out = out.with_columns(pl.when(mask).then(None).otherwise(pl.col(col)).alias(col))
    return out


def schema_break(frame: pl.DataFrame, dataset: DatasetSpec, spec: DriftSpec) -> pl.DataFrame:
    features = dataset.feature_columns
    renamed, dropped = features[0], features[-1]
    numeric = spec.column or _default_numeric(dataset)
    out = frame.with_columns(pl.col(numeric).cast(pl.String).str.replace(r"^", "n/a:"))
    return out.drop(dropped).rename({renamed: f"{renamed}_v2"})


_KINDS = {
    "covariate": covariate_shift,
    "prior": prior_shift,
    "concept": concept_drift,
    "label_noise": label_noise,
    "missing": missing_burst,
    "schema_break": schema_break,
}


def inject_drift(frame: pl.DataFrame, dataset: DatasetSpec, spec: DriftSpec) -> pl.DataFrame:
    """Apply one kind of drift (see the module docstring) to a contract-typed frame."""
    if spec.kind not in _KINDS:
        raise ValueError(f"unknown drift kind {spec.kind!r}; choose one of {', '.join(KINDS)}")
    if spec.column is not None and spec.column not in frame.columns:
        raise ValueError(f"column {spec.column!r} is not in the data")
    if not 0 <= spec.severity <= 10:
        raise ValueError(f"severity must be between 0 and 10, got {spec.severity}")
    return _KINDS[spec.kind](frame, dataset, spec)
