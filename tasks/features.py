"""The one feature function, shared by training, batch scoring and the online service.

Features are numeric: numeric columns become Float64, categorical columns become the integer
code of the value in the contract's domain (unknown or missing -> null, which LightGBM treats
as missing). The domain order is frozen into a :class:`FeatureSpec` stored with each model, so
a model keeps decoding its inputs the same way even after the contract grows new categories.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from schemas.base import DatasetSpec


@dataclass(frozen=True)
class FeatureSpec:
    """Ordered feature columns and the category domains of the categorical ones."""

    columns: tuple[str, ...]
    categories: dict[str, tuple[str, ...]]

    @classmethod
    def from_dataset(cls, dataset: DatasetSpec) -> FeatureSpec:
        cols = tuple(dataset.feature_columns)
        cats = {c: dataset.columns[c].categories for c in dataset.categorical_features}
        return cls(columns=cols, categories=cats)  # type: ignore[arg-type]

    @property
    def categorical_indices(self) -> list[int]:
        return [i for i, c in enumerate(self.columns) if c in self.categories]

    def to_dict(self) -> dict[str, Any]:
        cats = {k: list(v) for k, v in self.categories.items()}
        return {"columns": list(self.columns), "categories": cats}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpec:
        return cls(
            columns=tuple(data["columns"]),
            categories={k: tuple(v) for k, v in data["categories"].items()},
        )


def feature_exprs(spec: FeatureSpec) -> list[pl.Expr]:
    """Polars expressions turning contract columns into model features, in model order."""
    exprs: list[pl.Expr] = []
    for col in spec.columns:
        if col in spec.categories:
            domain = list(spec.categories[col])
            codes = list(range(len(domain)))
            expr = (
                pl.col(col)
                .cast(pl.String)
                .replace_strict(domain, codes, default=None, return_dtype=pl.Float64)
            )
        else:
            expr = pl.col(col).cast(pl.Float64, strict=False)
        exprs.append(expr.alias(col))
    return exprs


_EXPRS: dict[int, tuple[FeatureSpec, list[pl.Expr]]] = {}


def _cached_exprs(spec: FeatureSpec) -> list[pl.Expr]:
    # Building the expressions costs more than running them on a one-row request (serving).
    hit = _EXPRS.get(id(spec))
    if hit is None or hit[0] is not spec:
        hit = _EXPRS[id(spec)] = (spec, feature_exprs(spec))
    return hit[1]


def build_features(frame: pl.DataFrame, spec: FeatureSpec) -> pl.DataFrame:
    """Select and encode the feature columns of ``frame`` (extra columns are ignored)."""
    missing = [c for c in spec.columns if c not in frame.columns]
    if missing:
        raise ValueError(f"feature columns missing from input: {', '.join(missing)}")
    return frame.select(_cached_exprs(spec))


def to_matrix(features: pl.DataFrame) -> np.ndarray:
    """A C-ordered float64 matrix (nulls as NaN), the form LightGBM predicts fastest from."""
    return np.ascontiguousarray(features.to_numpy(order="c"), dtype=np.float64)


SMALL_ROWS = 16  # at most this many rows: the matrix is built in Python (a request's size)


def feature_matrix(frame: pl.DataFrame, spec: FeatureSpec) -> np.ndarray:
    """``to_matrix(build_features(frame, spec))``. A small frame (a served request) is encoded
    in Python when every column's type encodes exactly as the polars expressions do: the
    expressions' fixed cost is most of a one-row request's CPU (~0.35 ms of ~2 ms)."""
    plan = _row_plan(spec, frame) if frame.height <= SMALL_ROWS else None
    if plan is None:
        return to_matrix(build_features(frame, spec))
    out = [[encode(row[i]) for i, encode in plan] for row in frame.rows()]
    return np.array(out, dtype=np.float64).reshape(frame.height, len(plan))


_NAN = float("nan")
_PLANS: dict[tuple, tuple[FeatureSpec, list | None]] = {}


def _row_plan(spec: FeatureSpec, frame: pl.DataFrame) -> list | None:
    """(position in the frame's rows, value -> float) per feature column, or None when a
    column is missing or its type has no exact Python twin of its polars cast (then the
    polars path runs). Cached per spec and frame layout."""
    columns, dtypes = frame.columns, frame.dtypes
    key = (id(spec), tuple(columns), tuple(dtypes))
    hit = _PLANS.get(key)
    if hit is None or hit[0] is not spec:
        types = dict(zip(columns, dtypes, strict=True))
        plan: list | None = []
        for col in spec.columns:
            dtype = types.get(col)
            encoder = None if dtype is None else _encoder(dtype, spec.categories.get(col))
            if encoder is None:
                plan = None
                break
            plan.append((columns.index(col), encoder))
        if len(_PLANS) >= 64:  # bounded: every model swap brings a new spec
            _PLANS.clear()
        hit = _PLANS[key] = (spec, plan)
    return hit[1]


def _encoder(dtype: pl.DataType, domain: tuple[str, ...] | None):
    """The Python twin of :func:`feature_exprs`' expression for a column of ``dtype``."""
    if domain is None:  # numeric feature: cast to Float64 (bool -> 0/1; int -> nearest float)
        if dtype.is_integer() or dtype.is_float() or dtype == pl.Boolean:
            return lambda v: _NAN if v is None else float(v)
        return None
    codes = {value: float(i) for i, value in enumerate(domain)}
    if dtype == pl.String or isinstance(dtype, pl.Categorical | pl.Enum):
        return lambda v: codes.get(v, _NAN)  # unknown or missing -> missing
    if dtype.is_integer():  # cast(String) of an integer is its decimal digits, as str() gives
        return lambda v: _NAN if v is None else codes.get(str(v), _NAN)
    if dtype == pl.Boolean:
        return lambda v: _NAN if v is None else codes.get("true" if v else "false", _NAN)
    return None  # floats, dates, ...: their text form differs between polars and Python


def features_schema(spec: FeatureSpec) -> Any:
    """The pandera contract of :func:`build_features` output: every feature Float64 and
    nullable (missing stays missing); a categorical feature is a code in its frozen domain."""
    import pandera.polars as pa

    columns = {
        col: pa.Column(
            pl.Float64,
            nullable=True,
            checks=[pa.Check.in_range(0, len(spec.categories[col]) - 1)]
            if col in spec.categories
            else [],
        )
        for col in spec.columns
    }
    return pa.DataFrameSchema(columns, strict=True, ordered=True, name="Features")


def validate_features(features: pl.DataFrame, spec: FeatureSpec) -> pl.DataFrame:
    """Check a feature frame against :func:`features_schema` (training does; serving need not:
    it runs the same expressions)."""
    return features_schema(spec).validate(features, lazy=True)
