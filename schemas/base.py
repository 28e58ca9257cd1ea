"""What a dataset is to driftloop: a pandera contract plus a little metadata.

A dataset module (``schemas/<name>.py``) defines a pandera-polars ``DataFrameModel`` for the
raw, parsed rows and a module-level ``DATASET = DatasetSpec(...)``. Everything else (parsing,
features, the serving request model, drift tests) is derived from the two, so a user's own
CSV needs one module and nothing else.
"""

from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import pandera.polars as pa
import polars as pl

DEFAULT_NULL_MARKERS: tuple[str, ...] = (
    "", "NA", "N/A", "NaN", "nan", "null", "NULL", "None", "?",
)  # fmt: skip


@dataclass(frozen=True)
class ColumnInfo:
    """One column of the contract, as the rest of driftloop needs to see it."""

    name: str
    dtype: pl.DataType
    nullable: bool
    categories: tuple[str, ...] | None = None  # allowed values of a categorical column
    min_value: float | None = None
    max_value: float | None = None

    @property
    def is_categorical(self) -> bool:
        return self.categories is not None

    @property
    def is_numeric(self) -> bool:
        return self.dtype.is_numeric()


@dataclass(frozen=True)
class DatasetSpec:
    """The dataset's contract and metadata.

    ``model`` validates parsed rows (types already coerced). ``target`` is the label column;
    ``positive_class`` its positive value for binary tasks; ``classes`` the labels of a
    multiclass task, in the order of the model's probability columns. ``id_column`` identifies
    an entity (never a feature); ``event_time`` orders rows in time when present; ``ignore``
    lists columns kept in snapshots but never used as features. ``null_markers`` are the strings
    read as missing (compared after stripping whitespace). ``segment_columns`` are the slices
    evaluated for fairness gaps. ``extra_columns`` says what to do with columns the contract
    does not name: ``reject`` the file or ``drop`` them.
    """

    name: str
    model: type[pa.DataFrameModel]
    target: str
    task: Literal["binary", "multiclass", "regression"] = "binary"
    positive_class: Any = None
    classes: tuple[Any, ...] = ()
    id_column: str | None = None
    event_time: str | None = None
    ignore: tuple[str, ...] = ()
    null_markers: tuple[str, ...] = DEFAULT_NULL_MARKERS
    segment_columns: tuple[str, ...] = ()
    extra_columns: Literal["reject", "drop"] = "reject"
    delimiter: str = ","  # how the dataset's CSV files separate fields
    description: str = ""
    extras: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def schema(self) -> pa.DataFrameSchema:
        return self.model.to_schema()

    @cached_property
    def columns(self) -> dict[str, ColumnInfo]:
        """Columns in contract order with dtype, nullability, domain and range."""
        out: dict[str, ColumnInfo] = {}
        for name, col in self.schema.columns.items():
            cats: tuple[str, ...] | None = None
            lo = hi = None
            for check in col.checks:
                stats = check.statistics or {}
                if "allowed_values" in stats:
                    cats = tuple(str(v) for v in stats["allowed_values"])
                if "min_value" in stats:
                    lo = float(stats["min_value"])
                if "max_value" in stats:
                    hi = float(stats["max_value"])
            dtype = col.dtype.type if hasattr(col.dtype, "type") else col.dtype
            if not (dtype == pl.String or isinstance(dtype, pl.Categorical | pl.Enum)):
                cats = None  # an allowed set on a numeric column is a value check, not a domain
            out[name] = ColumnInfo(name, dtype, bool(col.nullable), cats, lo, hi)
        return out

    @property
    def column_names(self) -> list[str]:
        return list(self.columns)

    @property
    def feature_columns(self) -> list[str]:
        """Columns the model may use: all but target, id, event time and ignored ones."""
        skip = {self.target, self.id_column, self.event_time, *self.ignore}
        return [c for c in self.columns if c not in skip]

    @property
    def categorical_features(self) -> list[str]:
        return [c for c in self.feature_columns if self.columns[c].is_categorical]

    @property
    def numeric_features(self) -> list[str]:
        return [c for c in self.feature_columns if not self.columns[c].is_categorical]

    @property
    def class_index(self) -> dict[str, float]:
        """A multiclass label as a number: each class (as text) -> its index in ``classes``
        (the probability order; how labels are logged and profiled)."""
        return {str(c): float(i) for i, c in enumerate(self.classes)}

    @cached_property
    def schema_hash(self) -> str:
        """Hash of the contract's source and metadata: changes when the contract changes."""
        try:
            src = inspect.getsource(self.model)
        except (OSError, TypeError):
            src = repr(self.schema)
        meta = repr(
            (
                self.target,
                self.task,
                self.positive_class,
                *((self.classes,) if self.classes else ()),
                self.id_column,
                self.event_time,
                self.ignore,
                self.null_markers,
            )
        )
        return hashlib.sha256((src + meta).encode()).hexdigest()[:16]

    def __post_init__(self) -> None:
        if self.task == "multiclass" and len(self.classes) < 2:
            raise ValueError(f"dataset {self.name!r}: a multiclass task lists its classes")
