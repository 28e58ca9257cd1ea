"""Data-contract tests: one valid frame and several invalid ones per shipped schema."""

from __future__ import annotations

import pandera.polars as pa
import polars as pl
import pytest

from schemas import UnknownDatasetError, available_datasets, load_dataset
from schemas.records import FeedbackRecord

TELCO = load_dataset("telco")

VALID = {
    "customerID": "0001-ABCDE", "gender": "Female", "SeniorCitizen": 0, "Partner": "Yes",
    "Dependents": "No", "tenure": 12, "PhoneService": "Yes", "MultipleLines": "No",
    "InternetService": "DSL", "OnlineSecurity": "No", "OnlineBackup": "Yes",
    "DeviceProtection": "No", "TechSupport": "No", "StreamingTV": "No", "StreamingMovies": "No",
    "Contract": "One year", "PaperlessBilling": "Yes", "PaymentMethod": "Mailed check",
    "MonthlyCharges": 50.0, "TotalCharges": 600.0, "Churn": "No",
}  # fmt: skip


def _frame(**changes) -> pl.DataFrame:
    row = {**VALID, **changes}
    schema = {c: info.dtype for c, info in TELCO.columns.items()}
    return pl.DataFrame([row], schema=schema)


def test_a_valid_telco_row_passes() -> None:
    TELCO.model.validate(_frame(), lazy=True)
    TELCO.model.validate(_frame(tenure=0, TotalCharges=None), lazy=True)  # the documented rule


@pytest.mark.parametrize(
    ("changes", "check"),
    [
        ({"Contract": "Weekly"}, "isin"),
        ({"tenure": -1}, "greater_than_or_equal_to"),
        ({"MonthlyCharges": 5000.0}, "less_than_or_equal_to"),
        ({"Churn": None}, "not_nullable"),
        ({"TotalCharges": None}, "total_charges_missing_only_when_new"),
        ({"SeniorCitizen": 2}, "isin"),
    ],
)
def test_invalid_telco_rows_fail_the_named_check(changes: dict, check: str) -> None:
    with pytest.raises(pa.errors.SchemaErrors) as err:
        TELCO.model.validate(_frame(**changes), lazy=True)
    assert any(c.startswith(check) for c in err.value.failure_cases["check"].to_list())


def test_metadata_is_consistent() -> None:
    assert TELCO.target not in TELCO.feature_columns
    assert TELCO.id_column not in TELCO.feature_columns
    assert set(TELCO.segment_columns) <= set(TELCO.column_names)
    assert TELCO.columns["Contract"].categories == ("Month-to-month", "One year", "Two year")
    assert "telco" in available_datasets()
    with pytest.raises(UnknownDatasetError, match="unknown dataset 'nope'"):
        load_dataset("nope")


def test_feedback_needs_a_key() -> None:
    from datetime import UTC, datetime

    schema = {"request_id": pl.String, "entity_id": pl.String, "label": pl.Float64,
              "ts": pl.Datetime("us", "UTC")}  # fmt: skip
    now = datetime(2026, 1, 1, tzinfo=UTC)
    ok = pl.DataFrame([{"request_id": "r1", "entity_id": None, "label": 1.0, "ts": now}], schema)
    FeedbackRecord.validate(ok, lazy=True)
    no_key = ok.with_columns(pl.lit(None, pl.String).alias("request_id"))
    with pytest.raises(pa.errors.SchemaErrors):
        FeedbackRecord.validate(no_key, lazy=True)
