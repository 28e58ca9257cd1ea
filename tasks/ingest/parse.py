"""The one text-to-type parser: null markers to null, then each column cast to its contract
type. Ingest (:func:`parse_table`) and batch scoring (``tasks.scoring``) both parse with
:func:`parse_text`, so a string means the same value in both."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import polars as pl

from schemas.base import DatasetSpec
from tasks.ingest.table import LINE, ParsedTable, RawTable, concat_failures

_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")


def parse_expr(col: str, dtype: pl.DataType) -> pl.Expr:
    """Text (stripped, null markers already null) to ``dtype``; null where it does not parse."""
    text = pl.col(col)
    if dtype == pl.String or isinstance(dtype, pl.Categorical | pl.Enum):
        return text
    if dtype == pl.Boolean:
        low = text.str.to_lowercase()
        return pl.when(low.is_in(_TRUE)).then(True).when(low.is_in(_FALSE)).then(False)
    if isinstance(dtype, pl.Datetime):
        return text.str.to_datetime(strict=False, time_zone=dtype.time_zone or None)
    if dtype == pl.Date:
        return text.str.to_date(strict=False)
    if dtype.is_integer():
        # "3.0" is an integer written as a float: accept it when exact
        as_float = text.cast(pl.Float64, strict=False)
        exact = as_float.is_finite() & (as_float == as_float.round(0))
        return pl.coalesce(
            text.cast(dtype, strict=False), pl.when(exact).then(as_float).cast(dtype, strict=False)
        )
    if dtype.is_float():
        value = text.cast(dtype, strict=False)
        return pl.when(value.is_finite()).then(value)  # inf / nan are not numbers we accept
    return text.cast(dtype, strict=False)


def _fast_expr(col: str, dtype: pl.DataType) -> pl.Expr | None:
    """The column's value when its text needs no cleaning (None: always take the full path).

    Where it is null but the text is not, the full path (strip, null markers, lenient parse)
    decides: a plain number or an unpadded word needs no more than this.
    """
    text = pl.col(col)
    if dtype == pl.String or isinstance(dtype, pl.Categorical | pl.Enum):
        return pl.when(~text.str.contains(r"^\s|\s$")).then(text)
    if dtype.is_integer():
        return text.cast(dtype, strict=False)
    if dtype.is_float():
        value = text.cast(dtype, strict=False)
        return pl.when(value.is_finite()).then(value)
    return None  # dates and booleans: format inference needs the whole column


def _clean(values: pl.Series, markers: list[str]) -> pl.Series:
    """Stripped text, null where it is a null marker."""
    text = values.str.strip_chars()
    return pl.select(pl.when(text.is_in(markers)).then(None).otherwise(text)).to_series()


def parse_text(
    text: pl.DataFrame,
    dtypes: Mapping[str, pl.DataType],
    markers: Sequence[str],
    keep: Sequence[str] = (),
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Text columns of ``text`` to ``dtypes`` (the ``keep`` columns first, as they are).

    Returns the typed frame and the failures ``(row, column, "type: not a valid <dtype>",
    value)``: a value that is present but does not parse is null in the frame and a failure.
    Every value is read as if stripped; the common values (plain numbers, unpadded words that
    are no null marker) take one cast, in one multi-threaded select, and only the rest are
    cleaned and parsed one column at a time.
    """
    markers = list(markers)
    fast = {c: e for c, dtype in dtypes.items() if (e := _fast_expr(c, dtype)) is not None}
    exprs: list[pl.Expr | str] = list(keep)
    for c, e in fast.items():
        # a null marker the fast path would take as a value ("-1", or any word) goes slow
        taken = pl.DataFrame({c: markers}, schema={c: pl.String}).select(e)[c].is_not_null()
        trap = [m for m, ok in zip(markers, taken, strict=True) if ok]
        e = pl.when(~pl.col(c).is_in(trap)).then(e) if trap else e
        exprs.append(e.alias(c))
    both = text.lazy().select(exprs).collect()  # lazy: the casts are shared (CSE)
    columns, failures = [both[k] for k in keep], []
    for c, dtype in dtypes.items():
        if c in fast:  # only the values the fast path did not take
            idx = (both[c].is_null() & text[c].is_not_null()).arg_true()
        else:
            idx = pl.int_range(text.height, eager=True, dtype=pl.UInt32)
        cleaned = _clean(text[c].gather(idx), markers)
        parsed = cleaned.to_frame(c).select(parse_expr(c, dtype).alias(c)).to_series()
        if c not in fast:
            value = parsed
        elif len(idx):
            value = both[c].scatter(idx, parsed)
        else:
            value = both[c]
        columns.append(value.alias(c))
        bad = (cleaned.is_not_null() & parsed.is_null()).arg_true()
        if len(bad):
            failures.append(
                pl.DataFrame(
                    {
                        "row": idx.gather(bad).cast(pl.Int64),
                        "column": pl.repeat(c, len(bad), eager=True),
                        "check": pl.repeat(f"type: not a valid {dtype}", len(bad), eager=True),
                        "value": cleaned.gather(bad),
                    }
                )
            )
    return pl.DataFrame(columns), concat_failures(failures)


def parse_table(raw: RawTable, dataset: DatasetSpec) -> ParsedTable:
    """Null markers -> null, then each contract column cast to its type (:func:`parse_text`).

    A value that does not parse becomes null in ``frame`` and a failure ``(row, column,
    "type: <dtype>", value)``: pandera then sees typed columns only, so a bad value never
    cascades into dtype errors. Rows whose field count is wrong are failures too.
    """
    dtypes = {c: dataset.columns[c].dtype for c in dataset.column_names}
    frame, typed = parse_text(raw.frame, dtypes, dataset.null_markers, keep=(LINE,))
    failures = [typed]
    if raw.malformed.any():
        idx = raw.malformed.arg_true()
        n_fields = len(dataset.column_names) + len(raw.dropped_columns)
        failures.append(
            pl.DataFrame(
                {
                    "row": idx.cast(pl.Int64),
                    "column": pl.repeat(None, len(idx), eager=True, dtype=pl.String),
                    "check": pl.repeat(
                        f"malformed line: expected {n_fields} fields", len(idx), eager=True
                    ),
                    "value": "found " + raw.field_counts.gather(idx).cast(pl.String) + " fields",
                }
            )
        )
    return ParsedTable(frame, raw.frame, concat_failures(failures))
