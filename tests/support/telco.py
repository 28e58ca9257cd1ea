"""The shipped Telco data as test frames."""

from __future__ import annotations

from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parents[2]
TELCO_CSV = REPO / "data" / "telco_churn.csv"


def telco_frame() -> pl.DataFrame:
    """Every shipped row, with the numeric columns cast (TotalCharges blanks become null)."""
    raw = pl.read_csv(TELCO_CSV, infer_schema=False)
    return raw.with_columns(
        pl.col("SeniorCitizen", "tenure").cast(pl.Int64),
        pl.col("MonthlyCharges").cast(pl.Float64),
        pl.col("TotalCharges").str.strip_chars().cast(pl.Float64, strict=False),
    )


def telco_rows() -> pl.DataFrame:
    """The shipped Telco file, parsed and typed per the contract (as ingest does it)."""
    from schemas import load_dataset
    from tasks.ingest import parse, read

    ds = load_dataset("telco")
    parsed = parse.parse_table(read.read_table(TELCO_CSV, ds), ds)
    return parsed.frame.select(ds.column_names)
