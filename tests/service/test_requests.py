"""The serving request model agrees with the pandera contract it is generated from.

For the shipped rows and for value mutations derived generically from each column's contract
(None, out-of-domain category, below min, above max, pattern breaks, the dataframe rules), a
record is accepted by the request model (plus the frame rules) iff pandera accepts its row.
"""

from __future__ import annotations

import json
import math

import pandera.errors
import polars as pl
import pytest
from pydantic import BaseModel, ValidationError, create_model

from schemas import load_dataset
from schemas.base import DatasetSpec
from schemas.requests import frame_errors, records_to_frame, records_type, request_models
from tests.support.telco import telco_frame


def _request(ds: DatasetSpec) -> type[BaseModel]:
    return create_model("Req", records=(records_type(request_models(ds), 10_000), ...))


def _pydantic_ok(ds: DatasetSpec, row: dict) -> bool:
    try:
        _request(ds).model_validate_json(json.dumps({"records": [row]}))
        return True
    except ValidationError:
        return False


def _pandera_ok(ds: DatasetSpec, row: dict, target_value: object) -> bool:
    full = {**row, ds.target: target_value}
    types = {c: info.dtype for c, info in ds.columns.items()}
    try:
        frame = pl.DataFrame([full], schema=types, strict=False)
        ds.model.validate(frame, lazy=True)
        return True
    except (pandera.errors.SchemaErrors, pandera.errors.SchemaError):
        return False


def _mutations(ds: DatasetSpec, row: dict) -> list[tuple[str, dict]]:
    out = []
    for name, info in ds.columns.items():
        if name == ds.target:
            continue
        out.append((f"{name}=None", {**row, name: None}))
        if info.categories:
            out.append((f"{name} unknown", {**row, name: "__not_a_category__"}))
        if info.min_value is not None:
            out.append((f"{name} < min", {**row, name: _step(info, info.min_value, -1)}))
            out.append((f"{name} = min", {**row, name: _step(info, info.min_value, 0)}))
        if info.max_value is not None:
            out.append((f"{name} > max", {**row, name: _step(info, info.max_value, +1)}))
        if info.dtype == pl.String and not info.categories:
            out.append((f"{name} odd text", {**row, name: "a b!"}))
        if info.dtype.is_integer():
            out.append((f"{name} = 2", {**row, name: 2}))
    return out


def _step(info, bound: float, direction: int):
    value = bound + direction * (1 if info.dtype.is_integer() else 0.5)
    return int(value) if info.dtype.is_integer() else float(value)


def test_request_model_agrees_with_pandera_on_mutations():
    ds = load_dataset("telco")
    frame = telco_frame()
    target_value = frame[ds.target][0]
    base = frame.drop(ds.target).row(0, named=True)
    cases = [("shipped row", base), *_mutations(ds, base)]
    cases.append(
        ("rule: blank TotalCharges, tenure 5", {**base, "tenure": 5, "TotalCharges": None})
    )
    cases.append(
        ("rule: blank TotalCharges, tenure 0", {**base, "tenure": 0, "TotalCharges": None})
    )
    disagreements = [
        (label, p, q)
        for label, row in cases
        if (p := _pydantic_ok(ds, row)) != (q := _pandera_ok(ds, row, target_value))
    ]
    assert not disagreements, disagreements
    assert len(cases) > 40


def test_request_model_agrees_with_pandera_on_every_shipped_row():
    ds = load_dataset("telco")
    frame = telco_frame()
    try:
        ds.model.validate(frame, lazy=True)
        pandera_bad: set[int] = set()
    except pandera.errors.SchemaErrors as exc:
        pandera_bad = set(exc.failure_cases["index"].drop_nulls().to_list())
    models = request_models(ds)
    good, records, pydantic_bad = [], [], set()
    for i, row in enumerate(frame.drop(ds.target).to_dicts()):
        try:
            records.append(models.record.model_validate(row))
            good.append(i)
        except ValidationError:
            pydantic_bad.add(i)
    typed = records_to_frame(records, models)
    pydantic_bad |= {good[e["loc"][1]] for e in frame_errors(typed, models)}
    assert pydantic_bad == pandera_bad


def test_non_finite_numbers_are_refused_by_name():
    ds = load_dataset("telco")
    base = telco_frame().drop(ds.target).row(0, named=True)
    for value in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValidationError, match="MonthlyCharges"):
            request_models(ds).record.model_validate({**base, "MonthlyCharges": value})


def test_rule_errors_are_the_same_for_a_request_and_a_large_batch():
    """A request's few rows are checked in memory and read in Python (``_ROW_WISE_MAX``); a
    large batch in polars: both name the same rows."""
    ds = load_dataset("telco")
    models = request_models(ds)
    frame = telco_frame().drop(ds.target).head(48).with_row_index("i")
    broken = [0, 7, 15, 16, 33, 47]  # rule broken (TotalCharges blank after month 0) ...
    frame = frame.with_columns(  # ... and rows where the rule's result is null (tenure null)
        TotalCharges=pl.when(pl.col("i").is_in(broken + [20])).then(None)
        .otherwise(pl.col("TotalCharges")),
        tenure=pl.when(pl.col("i").is_in(broken)).then(5)
        .when(pl.col("i") == 20).then(None).otherwise(pl.col("tenure")),
    ).drop("i")  # fmt: skip
    whole = [e["loc"][1] for e in frame_errors(frame, models)]
    parts = [e["loc"][1] + start for start in range(0, 48, 16)
             for e in frame_errors(frame.slice(start, 16), models)]  # fmt: skip
    assert whole == parts == sorted([*broken, 20])
