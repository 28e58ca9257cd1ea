"""The frames passed between the ingest steps, and the one error a whole file can raise."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

LINE = "_line"  # 1-based line number in the source file (header = line 1)
REASONS = "_reasons"  # list of {column, check, value}
FAILURE_SCHEMA = {"row": pl.Int64, "column": pl.String, "check": pl.String, "value": pl.String}


class DataFileError(ValueError):
    """The file as a whole cannot be ingested (message names the file and the problem)."""


@dataclass(frozen=True)
class RawTable:
    """Every cell as text, the source line of each row, and rows with a wrong field count."""

    frame: pl.DataFrame  # contract + extra columns, all String, plus _line
    malformed: pl.Series  # Boolean per row: field count differs from the header's
    field_counts: pl.Series  # Int per row (null for Parquet)
    source: Path
    dropped_columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class ParsedTable:
    """Typed contract columns plus the per-row coercion failures found while parsing."""

    frame: pl.DataFrame  # contract columns, typed; _line
    raw: pl.DataFrame  # the text as read (kept whole for the quarantine)
    failures: pl.DataFrame  # row (int), column, check, value


@dataclass(frozen=True)
class Split:
    accepted: pl.DataFrame
    quarantined: pl.DataFrame
    failures: pl.DataFrame  # every failure, one row per (row, reason)


def without_line(frame: pl.DataFrame) -> pl.DataFrame:
    """The frame without its line numbers, sharing its columns (``drop`` would copy a frame
    whose columns are chunked differently, as the parsed frame's are)."""
    return pl.DataFrame([s for s in frame.get_columns() if s.name != LINE])


def concat_failures(parts: list[pl.DataFrame]) -> pl.DataFrame:
    """Failure frames (row, column, check, value) as one, with one schema."""
    if not parts:
        return pl.DataFrame(schema=FAILURE_SCHEMA)
    return pl.concat([p.cast(FAILURE_SCHEMA) for p in parts], how="vertical")
