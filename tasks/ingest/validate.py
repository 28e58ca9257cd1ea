"""Validation: the pandera contract on the parsed rows, duplicate ids, and the split of the
rows into accepted and quarantined (every reason kept)."""

from __future__ import annotations

import pandera.polars as pa
import polars as pl

from schemas.base import DatasetSpec
from tasks.ingest.table import (
    LINE,
    REASONS,
    DataFileError,
    ParsedTable,
    Split,
    concat_failures,
    without_line,
)


def validate_table(parsed: ParsedTable, dataset: DatasetSpec) -> pl.DataFrame:
    """Run the pandera contract (lazy, on the collected frame); return failures per row."""
    frame = without_line(parsed.frame)
    try:
        dataset.model.validate(frame, lazy=True)
        cases = None
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
    parts = [parsed.failures]
    if cases is not None and cases.height:
        if cases["index"].null_count():
            schema_level = cases.filter(pl.col("index").is_null())
            raise DataFileError(
                "schema-level failure: "
                + "; ".join(
                    f"{r['column']}: {r['check']}" for r in schema_level.iter_rows(named=True)
                )
            )
        row_level = cases.select(
            pl.col("index").cast(pl.Int64).alias("row"),
            pl.when(pl.col("schema_context") == "Column").then(pl.col("column")).alias("column"),
            pl.col("check"),
            pl.when(pl.col("schema_context") == "Column")
            .then(pl.col("failure_case"))
            .alias("value"),
        )
        # a value that failed to parse is null now: its not_nullable failure is a cascade
        coerce_keys = parsed.failures.select("row", "column")
        cascade = row_level.join(coerce_keys, on=["row", "column"], how="semi").filter(
            pl.col("check") == "not_nullable"
        )
        parts.append(row_level.join(cascade, on=["row", "column", "check"], how="anti"))
    parts.append(duplicate_id_failures(parsed.frame, dataset, concat_failures(parts)))
    return concat_failures(parts).unique(maintain_order=True)


def duplicate_id_failures(
    frame: pl.DataFrame, dataset: DatasetSpec, failures: pl.DataFrame
) -> pl.DataFrame:
    """Among rows that are otherwise valid, a repeated id keeps its first row only."""
    idc = dataset.id_column
    if idc is None or frame[idc].n_unique() == frame.height:  # no id repeats (cheap to know)
        return concat_failures([])
    bad_rows = failures["row"].unique()
    candidates = (
        frame.select(idc, LINE)
        .with_row_index("row")
        .filter(~pl.col("row").cast(pl.Int64).is_in(bad_rows.implode()) & pl.col(idc).is_not_null())
    )
    first_line = candidates.group_by(idc).agg(pl.col(LINE).min().alias("_first"))
    dupes = candidates.filter(~pl.col(idc).is_first_distinct()).join(first_line, on=idc)
    return dupes.select(
        pl.col("row").cast(pl.Int64),
        pl.lit(idc).alias("column"),
        ("duplicate id (first at line " + pl.col("_first").cast(pl.String) + ")").alias("check"),
        pl.col(idc).cast(pl.String).alias("value"),
    )


def split_rows(parsed: ParsedTable, failures: pl.DataFrame) -> Split:
    """Accepted = typed rows with no failure. Quarantined = raw rows, whole, with reasons."""
    reasons = (
        failures.group_by("row")
        .agg(pl.struct("column", "check", "value").alias(REASONS))
        .sort("row")
    )
    bad = reasons["row"]
    if bad.is_empty():  # nothing to take out: the typed frame as it is, no copy
        accepted = without_line(parsed.frame)
    else:
        keep = pl.repeat(True, parsed.frame.height, eager=True).scatter(bad, False)
        accepted = without_line(parsed.frame.filter(keep))
    quarantined = parsed.raw[bad].with_columns(reasons[REASONS])
    return Split(accepted, quarantined, failures)
