"""Serving request and response models, generated from a dataset's pandera contract.

The request model is derived from the same ``DataFrameModel`` ingestion validates with, so
the two cannot drift apart: each column becomes a pydantic field of the contract's type, with
its nullability, allowed values (``isin`` -> ``Literal``), range (``ge``/``le``/``gt``/``lt``),
pattern (``str_matches``) and length (``str_length``). Numbers are strict (``"5"`` is not a
number) and finite. Checks pydantic cannot express (dataframe-level checks such as
``total_charges_missing_only_when_new``, and column checks without a translation) are run on
the typed frame by :func:`frame_errors`, and reported in pydantic's error format.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import polars as pl
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    create_model,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from schemas.base import DatasetSpec

MAX_STRING = 1024  # no contract string needs more; a 10 MB string is refused early
MAX_RECORDS = 1_000  # records per /predict call
MAX_BATCH_RECORDS = 10_000  # records per /predict_batch call
MAX_FEEDBACK = 10_000

_BOUNDS = {
    "greater_than_or_equal_to": ("ge", "min_value"),
    "less_than_or_equal_to": ("le", "max_value"),
    "greater_than": ("gt", "min_value"),
    "less_than": ("lt", "max_value"),
}


@dataclass(frozen=True)
class RequestModels:
    """Everything the service needs to accept records of one dataset."""

    dataset: DatasetSpec
    record: type[BaseModel]
    input_columns: tuple[str, ...]
    polars_schema: dict[str, pl.DataType]
    frame_checks: tuple[Any, ...]  # (column or None, pandera Check) pydantic cannot express
    labels: dict[str, float]  # target class -> numeric label (binary: 1/0; multiclass: index)
    extra: str = "forbid"  # fields outside the contract: "forbid" (rejected) or "ignore"
    rules: tuple[FieldRule, ...] = ()  # one per input column, what its field was made from


def _base_type(dtype: pl.DataType) -> Any:
    if dtype.is_integer():
        return int
    if dtype.is_float():
        return float
    if dtype == pl.Boolean:
        return bool
    if isinstance(dtype, pl.Datetime):
        return dt.datetime
    if dtype == pl.Date:
        return dt.date
    return str


def _one_of(allowed: tuple[Any, ...]) -> Any:
    expected = " or ".join(repr(v) for v in allowed)

    def check(value: Any) -> Any:
        if value not in allowed:
            raise PydanticCustomError("literal_error", f"Input should be {expected}")
        return value

    return check


@dataclass(frozen=True)
class FieldRule:
    """What the contract allows in one request field, read once from its pandera column: the
    pydantic field (:func:`_field`) and the batch check of ``tasks.streaming.fastcheck`` are
    both made from it, so the two cannot disagree."""

    name: str
    base: type  # int, float, bool, str, datetime or date
    nullable: bool
    allowed: tuple[Any, ...] | None  # isin
    constraints: dict[str, Any]  # pydantic Field kwargs: ge/gt/le/lt, pattern, min/max_length
    untranslated: tuple[Any, ...]  # checks run on the typed frame (frame_errors)


def _rule(name: str, column: Any) -> FieldRule:
    dtype = column.dtype.type if hasattr(column.dtype, "type") else column.dtype
    base = _base_type(dtype)
    kwargs: dict[str, Any] = {}
    literal: tuple[Any, ...] | None = None
    untranslated: list[Any] = []
    for check in column.checks:
        stats = check.statistics or {}
        if check.name == "isin":
            literal = tuple(stats["allowed_values"])
        elif check.name in _BOUNDS:
            key, stat = _BOUNDS[check.name]
            kwargs[key] = stats[stat]
        elif check.name == "in_range":
            kwargs["ge" if stats.get("include_min", True) else "gt"] = stats["min_value"]
            kwargs["le" if stats.get("include_max", True) else "lt"] = stats["max_value"]
        elif check.name == "str_matches" and base is str:
            kwargs["pattern"] = stats["pattern"]
        elif check.name == "str_length" and base is str:
            if stats.get("min_value") is not None:
                kwargs["min_length"] = stats["min_value"]
            if stats.get("max_value") is not None:
                kwargs["max_length"] = stats["max_value"]
        else:
            untranslated.append(check)
    if base is int:  # an integer field's bounds are integers: 1.5 bounds 0/1 values at 1
        for key, rounded in (("ge", math.ceil), ("gt", math.floor), ("le", math.floor),
                             ("lt", math.ceil)):  # fmt: skip
            if kwargs.get(key) is not None:
                kwargs[key] = int(rounded(kwargs[key]))
    if base is str and literal is None:
        kwargs.setdefault("max_length", MAX_STRING)
    return FieldRule(name, base, column.nullable, literal, kwargs, tuple(untranslated))


def _field(rule: FieldRule) -> tuple[Any, Any]:
    """(annotation, default) of one request field."""
    base, literal, kwargs = rule.base, rule.allowed, dict(rule.constraints)
    if literal is not None and base is str:
        annotation: Any = Literal[literal]  # type: ignore[valid-type]
    elif literal is not None:  # a Literal would take True for 1: keep the type strict
        annotation = Annotated[base, Field(strict=True), AfterValidator(_one_of(literal))]
    elif base is str:
        pattern = kwargs.pop("pattern", None)
        annotation = Annotated[str, StringConstraints(pattern=pattern, strict=True)]
    elif base is float:
        annotation = Annotated[float, Field(strict=True, allow_inf_nan=False)]
    elif base in (int, bool):
        annotation = Annotated[base, Field(strict=True)]
    else:
        annotation = base
    default: Any = ...
    if rule.nullable:
        annotation, default = annotation | None, None
    return annotation, Field(default, **kwargs)


_CACHE: dict[tuple[str, str], RequestModels] = {}


def request_models(dataset: DatasetSpec) -> RequestModels:
    """The (cached) request models of ``dataset``."""
    key = (dataset.name, dataset.schema_hash)
    if key not in _CACHE:
        _CACHE[key] = _build(dataset)
    return _CACHE[key]


def _build(dataset: DatasetSpec) -> RequestModels:
    """Build the record model and collect the checks pydantic cannot express."""
    schema = dataset.schema
    fields: dict[str, Any] = {}
    frame_checks: list[Any] = [(None, c) for c in schema.checks]
    columns = [c for c in dataset.columns if c != dataset.target]
    rules = tuple(_rule(name, schema.columns[name]) for name in columns)
    for rule in rules:
        fields[rule.name] = _field(rule)
        frame_checks += [(rule.name, c) for c in rule.untranslated]
    extra = "forbid" if dataset.extra_columns == "reject" else "ignore"
    record = create_model(
        f"{dataset.name.title().replace('_', '')}Record",
        __config__=ConfigDict(extra=extra, title=f"{dataset.name} record"),
        **fields,
    )
    labels: dict[str, float] = {}
    target = dataset.columns.get(dataset.target)
    if dataset.task == "binary" and target is not None and target.categories:
        labels = {c: float(str(c) == str(dataset.positive_class)) for c in target.categories}
    elif dataset.task == "multiclass":  # a class is logged as its index (probability order)
        labels = dataset.class_index
    return RequestModels(
        dataset=dataset,
        record=record,
        input_columns=tuple(columns),
        polars_schema={c: dataset.columns[c].dtype for c in columns},
        frame_checks=tuple(frame_checks),
        labels=labels,
        extra=extra,
        rules=rules,
    )


_ROW_WISE_MAX = 16  # below this, building a frame row-wise is cheaper than column-wise


def records_to_frame(records: list[BaseModel], models: RequestModels) -> pl.DataFrame:
    """Validated records -> a frame typed as the contract types it (one column per input)."""
    return rows_to_frame([r.__dict__ for r in records], models)


def rows_to_frame(rows: list[dict[str, Any]], models: RequestModels) -> pl.DataFrame:
    """Validated records' fields (an absent field is null) -> the contract-typed frame."""
    cols, schema = models.input_columns, models.polars_schema
    if len(rows) <= _ROW_WISE_MAX:
        return pl.DataFrame(
            [tuple(row.get(c) for c in cols) for row in rows], schema=schema, orient="row"
        )
    return pl.DataFrame([pl.Series(c, [row.get(c) for row in rows], dtype=schema[c]) for c in cols])


def frame_errors(frame: pl.DataFrame, models: RequestModels, loc: str = "records") -> list[dict]:
    """Errors (pydantic's shape) for the contract checks pydantic cannot express."""
    from pandera.api.polars.types import PolarsData

    errors: list[dict] = []
    lazy = frame.lazy()
    for column, check in models.frame_checks:
        result = check._check_fn(PolarsData(lazy, column or "*"))
        bad = _failed_rows(result, small=frame.height <= _ROW_WISE_MAX)
        if not bad:  # one polars query per rule when the batch is clean
            continue
        names = result.collect_schema().names()
        where = f"column {column!r}" if column else f"columns {', '.join(names)}"
        msg = f"record violates the contract rule {check.name!r} on {where}"
        errors += [{"type": check.name, "loc": (loc, i) if column is None else (loc, i, column),
                    "msg": msg} for i in bad]  # fmt: skip
    return errors


def _failed_rows(result: pl.LazyFrame, *, small: bool) -> list[int]:
    """Rows where a rule's boolean result is not true in every column (null fails)."""
    if small:  # a request's few rows: polars' streaming start-up, query planning and Series
        # operations would cost ~0.1 ms per rule; in memory, unplanned, read in Python ~0.03
        done = result.collect(engine="in-memory", optimizations=pl.QueryOptFlags.none())
        return [i for i, row in enumerate(done.iter_rows()) if not all(v is True for v in row)]
    ok = result.select(pl.all_horizontal(pl.all().fill_null(False))).collect().to_series()
    return [] if ok.all() else (~ok).arg_true().to_list()


class RecordList(list):
    """Validated records that carry their contract-typed frame (built once, during parsing)."""

    frame: pl.DataFrame


def _frame_validator(models: RequestModels, loc: str) -> Any:
    def check(records: list[BaseModel]) -> RecordList:
        out = RecordList(records)
        out.frame = records_to_frame(records, models)
        errors = frame_errors(out.frame, models, loc)
        if errors:
            first = errors[0]
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            where = ".".join(str(p) for p in first["loc"][1:])
            raise PydanticCustomError(str(first["type"]), f"{loc}[{where}]: {first['msg']}{more}")
        return out

    return check


def records_type(models: RequestModels, max_records: int, loc: str = "records") -> Any:
    """The request's list of records: 1..max_records, each the record model, whole-checked."""
    return Annotated[
        list[models.record],  # type: ignore[name-defined]
        Field(min_length=1, max_length=max_records),
        AfterValidator(_frame_validator(models, loc)),
    ]


def raise_errors(errors: list[dict], title: str = "Input") -> None:
    """Raise ``errors`` as a pydantic ``ValidationError`` (BentoML turns it into a 400)."""
    if not errors:
        return
    details = [
        InitErrorDetails(
            type=PydanticCustomError(str(e["type"]), str(e["msg"])),
            loc=tuple(e["loc"]),
            input=e.get("input"),
        )
        for e in errors
    ]
    raise ValidationError.from_exception_data(title, details)


# --- responses and feedback (the same for every dataset) ---------------------------------


class Prediction(BaseModel):
    """One scored record, by the model of its arm: the champion, or the challenger for the
    entities a canary routes to it (a shadow challenger's score is never returned)."""

    request_id: str
    id: str | None = Field(None, description="The record's entity id (the dataset's id column).")
    score: float = Field(
        description="Binary: P(positive class); regression: the value; multiclass: "
        "P(predicted class)."
    )
    decision: bool | None = Field(None, description="Binary: score >= the model's threshold.")
    predicted_class: str | None = Field(None, description="Multiclass: the most probable class.")
    probabilities: dict[str, float] | None = Field(
        None, description="Multiclass: the probability of every class."
    )
    model_tag: str = Field(description="The model that answered.")
    arm: Literal["champion", "challenger"] = Field(
        "champion", description="The rollout arm the record was routed to."
    )


class PredictResponse(BaseModel):
    model_tag: str = Field(description="The model that answered the first record.")
    predictions: list[Prediction]


_Key = Annotated[str, StringConstraints(min_length=1, max_length=256, strict=True)]


def _as_utc(value: dt.datetime) -> dt.datetime:
    """A time as UTC (a naive time is taken as UTC); one the calendar cannot hold is refused."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:
        raise PydanticCustomError(
            "datetime_range", "time falls outside years 1-9999 once converted to UTC"
        ) from None


UtcTime = Annotated[dt.datetime, AfterValidator(_as_utc)]


class FeedbackItem(BaseModel):
    """A delayed ground-truth label for a prediction (``request_id``) or an entity."""

    model_config = ConfigDict(extra="forbid")

    request_id: _Key | None = None
    entity_id: _Key | None = None
    label: Annotated[float, Field(allow_inf_nan=False)] | _Key
    ts: UtcTime | None = Field(None, description="When the outcome was observed (UTC).")

    @model_validator(mode="after")
    def _has_key(self) -> FeedbackItem:
        if self.request_id is None and self.entity_id is None:
            raise ValueError("feedback needs a request_id or an entity_id")
        return self


class FeedbackResponse(BaseModel):
    accepted: int


def label_values(items: list[FeedbackItem], models: RequestModels) -> list[float]:
    """Numeric labels (1/0 for binary: the positive class or 1 is 1; a multiclass label's class
    index); errors name the item."""
    errors: list[dict] = []
    out: list[float] = []
    binary = models.dataset.task == "binary"
    multiclass = models.dataset.task == "multiclass"
    for i, item in enumerate(items):
        value = item.label
        if multiclass and not isinstance(value, str):  # 2 and 2.0 name the class "2"
            value = str(int(value)) if float(value).is_integer() else str(value)
        if isinstance(value, str) and not models.labels:  # a numeric target sent as text
            try:
                value = float(value)
            except ValueError:
                value = float("nan")
            if not math.isfinite(value):
                errors.append(_label_error(i, f"label {item.label!r} is not a finite number"))
                continue
        if isinstance(value, str):
            if value not in models.labels:
                allowed = ", ".join(repr(k) for k in models.labels) or "a number"
                errors.append(_label_error(i, f"unknown label {value!r}; expected {allowed}"))
                continue
            value = models.labels[value]
        elif binary and value not in (0.0, 1.0):
            errors.append(_label_error(i, f"binary label must be 0 or 1, got {value}"))
            continue
        out.append(float(value))
    raise_errors(errors)
    return out


def _label_error(i: int, msg: str) -> dict:
    return {"type": "label", "loc": ("feedback", i, "label"), "msg": msg}
