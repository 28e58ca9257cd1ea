"""Drift injection, for demos, tests and fire drills, on any dataset.

Each kind takes a frame typed by the dataset's contract and returns a drifted copy with the
same columns (except ``schema_break``, which breaks the contract on purpose):

- ``covariate``: numeric features shifted by ``severity`` standard deviations, and the
  categorical features' mix tilted towards one category;
- ``prior``: the positive rate (multiclass: the rarest class's; regression: the share above the
  median) moved by resampling rows (label shift);
- ``concept``: the label's relationship to a feature changed by a rule: in the top half of
  ``column`` labels flip with probability ``severity`` (multiclass: to the next class;
  regression: mirrored around the mean; the world changed; a retrain can learn it);
- ``label_noise``: labels replaced by coin flips at the base rate (multiclass and regression:
  shuffled; nothing left to learn);
- ``missing``: a burst of missing values in a few feature columns;
- ``schema_break``: a column renamed, one dropped, and text written into a numeric column;
- ``none``: the rows reshuffled (a sample of the same distribution: what "no change" looks like);
- ``feature_shift``: one feature moved (``column``; numeric by ``severity`` standard deviations,
  categorical towards its first category), e.g. a feature the model barely uses;
- ``correlation_flip``: ``column``'s values reversed in rank order among a random share
  ``severity`` of the rows: every marginal exactly unchanged, its correlations flipped;
- ``tilt``: rows resampled with weight ``exp(severity * z)``, ``z`` the standardised
  ``column`` (a categorical one as "its first category or not"; ``column`` may also name a
  column outside the contract, e.g. the model's score): its mean moves by about ``severity``
  standard deviations, and P(label | inputs)
  stays exactly as it was (pure covariate shift, unlike ``covariate``, which moves values);
  with ``within`` (e.g. the model's score) the weights are balanced within bins of that
  column, which keeps its distribution;
- ``narrow``: rows resampled with weight ``exp(-severity * z**2 / 2)``: the population
  concentrates around ``column``'s mean (pure covariate shift; on a feature the model relies
  on, its ranking has less to work with).

:func:`scenario_windows` cuts held-out rows into windows and drifts the later ones: the
scenarios of the replay benchmark (:data:`SCENARIOS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

from schemas.base import DatasetSpec

Kind = Literal[
    "covariate", "prior", "concept", "label_noise", "missing", "schema_break",
    "none", "feature_shift", "correlation_flip", "tilt", "narrow",
]  # fmt: skip
KINDS: tuple[str, ...] = Kind.__args__  # type: ignore[attr-defined]
WITHIN_BINS = 10  # quantile bins of ``DriftSpec.within`` a tilt keeps the distribution of


@dataclass(frozen=True)
class DriftSpec:
    kind: Kind
    severity: float = 0.5
    column: str | None = None  # the feature a rule uses (default: chosen from the contract)
    seed: int = 0
    within: str | None = None  # tilt: reweight within quantile bins of this column (kept as is)


def _label_is_positive(frame: pl.DataFrame, dataset: DatasetSpec) -> np.ndarray:
    """Binary: the positive class. Multiclass: the rarest class. Regression: above the median
    (what ``prior`` makes more common)."""
    y = frame[dataset.target]
    if dataset.task == "regression":
        return (y.cast(pl.Float64) > y.cast(pl.Float64).median()).fill_null(False).to_numpy()
    if dataset.task == "multiclass":
        counts = y.drop_nulls().value_counts(sort=True)
        rarest = counts[y.name][-1] if counts.height else None
        return (y == rarest).fill_null(False).to_numpy()
    return (y == dataset.positive_class).fill_null(False).to_numpy()


def _changed_labels(frame: pl.DataFrame, dataset: DatasetSpec, where: np.ndarray) -> pl.DataFrame:
    """A multiclass or regression target changed in the rows ``where``: a class becomes the
    next one in the contract's order, a value is mirrored around the mean (``concept``)."""
    y, target = frame[dataset.target], dataset.target
    if dataset.task == "regression":
        mean = y.cast(pl.Float64).mean() or 0.0
        new = (2 * mean - y.cast(pl.Float64)).cast(y.dtype)
    else:
        order = [str(c) for c in dataset.classes] or sorted(y.drop_nulls().cast(pl.String).unique())
        step = {c: order[(i + 1) % len(order)] for i, c in enumerate(order)}
        new = y.cast(pl.String).replace(step).cast(y.dtype)
    changed = frame.with_columns(pl.when(pl.Series(where)).then(new).otherwise(y).alias(target))
    return _keep_valid(changed, frame, dataset)


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
    flip = rule & (rng.random(frame.height) < spec.severity)
    if dataset.task != "binary":
        return _changed_labels(frame, dataset, flip)
    positive = _label_is_positive(frame, dataset)
    return _with_labels(frame, dataset, np.where(flip, ~positive, positive))


def label_noise(frame: pl.DataFrame, dataset: DatasetSpec, spec: DriftSpec) -> pl.DataFrame:
    rng = np.random.default_rng(spec.seed)
    if dataset.task != "binary":  # the labels shuffled: their mix kept, their signal gone
        shuffled = frame[dataset.target].sample(fraction=1.0, shuffle=True, seed=spec.seed)
        return frame.with_columns(shuffled.alias(dataset.target))
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


def reshuffle(frame: pl.DataFrame, dataset: DatasetSpec, spec: DriftSpec) -> pl.DataFrame:
    return frame[np.random.default_rng(spec.seed).permutation(frame.height)]


def feature_shift(frame: pl.DataFrame, dataset: DatasetSpec, spec: DriftSpec) -> pl.DataFrame:
    rng = np.random.default_rng(spec.seed)
    col = spec.column or _default_numeric(dataset)
    info = dataset.columns[col]
    if info.is_categorical:
        moved = pl.Series(rng.random(frame.height) < min(1.0, 0.5 * spec.severity))
        first = pl.lit(info.categories[0]).cast(frame.schema[col])
        return frame.with_columns(pl.when(moved).then(first).otherwise(pl.col(col)).alias(col))
    std = frame[col].cast(pl.Float64).std() or 1.0
    shifted = pl.col(col).cast(pl.Float64) + spec.severity * std
    if info.max_value is not None:
        shifted = shifted.clip(upper_bound=info.max_value)
    return _keep_valid(frame.with_columns(shifted.cast(info.dtype).alias(col)), frame, dataset)


def correlation_flip(frame: pl.DataFrame, dataset: DatasetSpec, spec: DriftSpec) -> pl.DataFrame:
    rng = np.random.default_rng(spec.seed)
    col = spec.column or _default_numeric(dataset)
    values = frame[col]
    present = ~values.is_null().to_numpy()
    rows = np.flatnonzero(present & (rng.random(frame.height) < min(1.0, spec.severity)))
    ranked = rows[np.argsort(values.to_numpy()[rows], kind="stable")]
    source = np.arange(frame.height)
    source[ranked] = ranked[::-1]  # the smallest value's row takes the largest: a permutation
    return frame.with_columns(values.gather(source))


def standardised(frame: pl.DataFrame, dataset: DatasetSpec, column: str) -> np.ndarray:
    """``column`` as z-scores (a categorical one as its first category or not; nulls 0)."""
    info = dataset.columns.get(column)
    if info is not None and info.is_categorical:  # its first category against the rest
        x = (frame[column].cast(pl.String) == str(info.categories[0])).cast(pl.Float64)
    else:
        x = frame[column].cast(pl.Float64)
    values = x.to_numpy()
    mean, std = np.nanmean(values), np.nanstd(values) or 1.0
    return np.nan_to_num((values - mean) / std)


def tilt_weights(frame: pl.DataFrame, dataset: DatasetSpec, spec: DriftSpec) -> np.ndarray:
    """The row weights of ``tilt`` (mean 1): ``exp(severity * z)``; with ``spec.within``,
    divided by their mean in each of :data:`WITHIN_BINS` quantile bins of that column, so
    the rows it selects keep that column's distribution (e.g. the model's score: the shift
    moves ``column`` and leaves the score, and so the model's ranking, as it was)."""
    logw = spec.severity * standardised(frame, dataset, spec.column or _default_numeric(dataset))
    w = np.exp(logw - logw.max())
    if spec.within is not None:
        by = frame[spec.within].cast(pl.Float64).fill_null(np.nan).to_numpy()
        edges = np.nanquantile(by, np.linspace(0, 1, WITHIN_BINS + 1)[1:-1])
        group = np.searchsorted(edges, by, side="right")  # nulls (NaN) in the last bin
        w = w / (np.bincount(group, weights=w) / np.bincount(group))[group]
    return w / w.mean()


def _select(frame: pl.DataFrame, dataset: DatasetSpec, spec: DriftSpec, narrow: bool):
    rng = np.random.default_rng(spec.seed)
    if narrow:
        z = standardised(frame, dataset, spec.column or _default_numeric(dataset))
        logw = -spec.severity * z**2 / 2
        w = np.exp(logw - logw.max())
    else:
        w = tilt_weights(frame, dataset, spec)
    return frame[rng.choice(frame.height, frame.height, replace=True, p=w / w.sum())]


def tilt(frame: pl.DataFrame, dataset: DatasetSpec, spec: DriftSpec) -> pl.DataFrame:
    return _select(frame, dataset, spec, narrow=False)


def narrow(frame: pl.DataFrame, dataset: DatasetSpec, spec: DriftSpec) -> pl.DataFrame:
    return _select(frame, dataset, spec, narrow=True)


_KINDS = {
    "covariate": covariate_shift,
    "prior": prior_shift,
    "concept": concept_drift,
    "label_noise": label_noise,
    "missing": missing_burst,
    "schema_break": schema_break,
    "none": reshuffle,
    "feature_shift": feature_shift,
    "correlation_flip": correlation_flip,
    "tilt": tilt,
    "narrow": narrow,
}


def inject_drift(frame: pl.DataFrame, dataset: DatasetSpec, spec: DriftSpec) -> pl.DataFrame:
    """Apply one kind of drift (see the module docstring) to a contract-typed frame."""
    if spec.kind not in _KINDS:
        raise ValueError(f"unknown drift kind {spec.kind!r}; choose one of {', '.join(KINDS)}")
    for column in (spec.column, spec.within):
        if column is not None and column not in frame.columns:
            raise ValueError(f"column {column!r} is not in the data")
    if not 0 <= spec.severity <= 10:
        raise ValueError(f"severity must be between 0 and 10, got {spec.severity}")
    return _KINDS[spec.kind](frame, dataset, spec)


# The replay benchmark's scenarios (issue #14): the drift each applies to the later windows.
# Both covariate shifts select rows (P(label | inputs) unchanged) and need a ``column`` from the
# caller, who knows the model: ``harmful_covariate`` narrows the population around the middle
# of what the model relies on (e.g. its score, a function of the inputs), ``harmless_covariate``
# tilts a feature it barely uses, within bins of its score (``within``: the score's
# distribution is kept). ``concept_segment`` flips labels in one segment of ``column``.
SCENARIOS: dict[str, DriftSpec] = {
    "no_change": DriftSpec("none"),
    "harmful_covariate": DriftSpec("narrow", severity=2.0),
    "harmless_covariate": DriftSpec("tilt", severity=0.5),
    "prior_shift": DriftSpec("prior", severity=0.5),
    "concept_segment": DriftSpec("concept", severity=0.8),
    "label_noise": DriftSpec("label_noise"),
    "missing_values": DriftSpec("missing", severity=0.3),
    "schema_break": DriftSpec("schema_break"),
    "correlation_flip": DriftSpec("correlation_flip", severity=1.0),
}


def scenario_windows(
    frame: pl.DataFrame,
    dataset: DatasetSpec,
    spec: DriftSpec,
    *,
    windows: int,
    rows: int,
    drift_from: int = 0,
    seed: int = 0,
) -> list[pl.DataFrame]:
    """``windows`` windows of ``rows`` rows drawn from ``frame`` (held-out rows; without
    replacement when there are enough), with ``spec`` applied from window ``drift_from`` on,
    each window with its own seed."""
    from dataclasses import replace

    rng = np.random.default_rng(seed)
    out = []
    for i in range(windows):
        idx = rng.choice(frame.height, rows, replace=rows > frame.height)
        window = frame[idx]
        if i >= drift_from:
            window = inject_drift(window, dataset, replace(spec, seed=seed * 1_000 + i))
        out.append(window)
    return out
