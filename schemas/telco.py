"""IBM Telco customer churn (7,043 customers, 21 columns; see data/SOURCE.md).

Blank ``TotalCharges`` rule: 11 customers have a blank ``TotalCharges``; all have ``tenure == 0``:
they joined in the current month and have not been billed yet. The contract accepts a missing
``TotalCharges`` *only* when ``tenure == 0`` (kept as null: LightGBM treats it as missing, which
is the truth); a blank ``TotalCharges`` with ``tenure > 0`` is a broken record and is quarantined
with the reason ``total_charges_missing_only_when_new``.
"""

from __future__ import annotations

import pandera.polars as pa
import polars as pl

from schemas.base import DatasetSpec

YES_NO = ["No", "Yes"]
INTERNET_ADDON = ["No", "No internet service", "Yes"]


class TelcoCustomer(pa.DataFrameModel):
    """One customer, parsed and typed."""

    customerID: str = pa.Field(str_matches=r"^[0-9A-Za-z-]{1,32}$")
    gender: str = pa.Field(isin=["Female", "Male"])
    SeniorCitizen: pl.Int64 = pa.Field(isin=[0, 1])
    Partner: str = pa.Field(isin=YES_NO)
    Dependents: str = pa.Field(isin=YES_NO)
    tenure: pl.Int64 = pa.Field(ge=0, le=120)
    PhoneService: str = pa.Field(isin=YES_NO)
    MultipleLines: str = pa.Field(isin=["No", "No phone service", "Yes"])
    InternetService: str = pa.Field(isin=["DSL", "Fiber optic", "No"])
    OnlineSecurity: str = pa.Field(isin=INTERNET_ADDON)
    OnlineBackup: str = pa.Field(isin=INTERNET_ADDON)
    DeviceProtection: str = pa.Field(isin=INTERNET_ADDON)
    TechSupport: str = pa.Field(isin=INTERNET_ADDON)
    StreamingTV: str = pa.Field(isin=INTERNET_ADDON)
    StreamingMovies: str = pa.Field(isin=INTERNET_ADDON)
    Contract: str = pa.Field(isin=["Month-to-month", "One year", "Two year"])
    PaperlessBilling: str = pa.Field(isin=YES_NO)
    PaymentMethod: str = pa.Field(
        isin=[
            "Bank transfer (automatic)",
            "Credit card (automatic)",
            "Electronic check",
            "Mailed check",
        ]
    )
    MonthlyCharges: pl.Float64 = pa.Field(ge=0, le=1000)
    TotalCharges: pl.Float64 = pa.Field(ge=0, le=100_000, nullable=True)
    Churn: str = pa.Field(isin=YES_NO)

    @pa.dataframe_check
    def total_charges_missing_only_when_new(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("TotalCharges").is_not_null() | (pl.col("tenure") == 0))

    class Config:
        strict = True


DATASET = DatasetSpec(
    name="telco",
    model=TelcoCustomer,
    target="Churn",
    task="binary",
    positive_class="Yes",
    id_column="customerID",
    segment_columns=("gender", "SeniorCitizen", "Contract"),
    description="IBM Telco customer churn: will a customer leave this month?",
    extras={
        # business value used to choose the decision threshold (per customer, per month)
        "value_retained": 65.0 * 12 * 0.5,
        "offer_cost": 40.0,
        "offer_success_rate": 0.3,
    },
)
