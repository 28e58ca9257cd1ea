"""Ingestion: read a CSV/Parquet file, parse it per contract, validate, quarantine, version.

The steps are plain functions, composed by ``flows/ingest.py``:

``check_file`` (file-level problems: one clear error each) -> ``read_table`` (every value as
text, plus the rows whose field count is wrong) -> ``parse_table`` (null markers, typed
columns, coercion failures) -> ``validate_table`` (pandera, lazy, on the collected frame) ->
``split_rows`` (accepted vs quarantined, every reason kept) -> ``save_snapshot`` (Parquet
named by its content hash, with a manifest) -> ``quality_report``.

Invariant: ``rows_in == rows_accepted + rows_quarantined``. A row is never dropped silently.
"""

from __future__ import annotations

import codecs
import difflib
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pandera.polars as pa
import polars as pl

from schemas.base import DatasetSpec
from tasks.io import atomic_write

LINE = "_line"  # 1-based line number in the source file (header = line 1)
REASONS = "_reasons"  # list of {column, check, value}
REASON_STRUCT = pl.Struct({"column": pl.String, "check": pl.String, "value": pl.String})
_OTHER_DELIMITERS = (";", "\t", "|")
_CHUNK = 1 << 24  # bytes per read when checking a file's encoding


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


@dataclass(frozen=True)
class Snapshot:
    data_version: str
    path: Path
    manifest_path: Path
    quarantine_path: Path


@dataclass
class QualityThresholds:
    """Limits of the four data-quality dimensions; exceeding one fails the ingest."""

    max_missing_share: float = 0.2  # completeness, per column
    max_quarantine_share: float = 0.05  # consistency + accuracy, all rows
    max_duplicate_share: float = 0.01  # consistency, duplicate ids
    max_staleness_hours: float | None = None  # timeliness, when the dataset has an event time


@dataclass
class QualityReport:
    data: dict[str, Any]
    failed: list[str] = field(default_factory=list)
    json_path: Path | None = None
    page_path: Path | None = None


# --- reading -----------------------------------------------------------------------------


def _close(name: str, candidates: list[str]) -> str:
    match = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f" (found {match[0]!r}: renamed?)" if match else ""


def check_columns(
    header: list[str], dataset: DatasetSpec, extra_columns: Literal["reject", "drop"] | None = None
) -> list[str]:
    """Raise on a missing target, missing or unexpected columns; return the extra columns."""
    expected = dataset.column_names
    present = set(header)
    extra = [c for c in header if c not in set(expected)]
    if dataset.target not in present:
        raise DataFileError(
            f"target column {dataset.target!r} is absent{_close(dataset.target, extra)}"
        )
    missing = [c for c in expected if c not in present]
    if missing:
        hints = "".join(f"; {m!r}{_close(m, extra)}" for m in missing if _close(m, extra))
        raise DataFileError(
            f"missing required columns: {', '.join(missing)}{hints} "
            f"(the header has {len(header)} columns)"
        )
    mode = extra_columns or dataset.extra_columns
    if extra and mode == "reject":
        raise DataFileError(
            f"unexpected extra columns: {', '.join(extra)} "
            f"(drop them with --extra-columns drop, or add them to schemas/{dataset.name}.py)"
        )
    return extra


def check_file(
    path: Path,
    dataset: DatasetSpec,
    delimiter: str = ",",
    encoding: str = "utf-8",
    extra_columns: Literal["reject", "drop"] | None = None,
    data: bytes | None = None,
) -> list[str]:
    """File-level checks before any row is read; returns the header. Raises DataFileError.

    ``data`` is the file's content when the caller has read it already; otherwise the file is
    streamed (its encoding is checked chunk by chunk, never decoded whole).
    """
    path = Path(path)
    if not path.exists():
        raise DataFileError(f"file not found: {path}")
    if path.is_dir():
        raise DataFileError(f"expected a file, got a directory: {path}")
    if path.stat().st_size == 0:
        raise DataFileError(f"file is empty: {path}")
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            header = list(pl.read_parquet_schema(path))
        except Exception as exc:  # polars raises several types for a broken footer
            raise DataFileError(f"not a readable Parquet file: {path} ({exc})") from None
        check_columns(header, dataset, extra_columns)
        return header
    head = _check_encoding(path, encoding, data)
    first, _, rest = head.lstrip("\ufeff").partition("\n")
    first = first.rstrip("\r")
    if not first.strip():
        raise DataFileError(f"file has no header line: {path}")
    header = [h.strip().strip('"') for h in first.split(delimiter)]
    if len(header) == 1:
        guess = max(_OTHER_DELIMITERS, key=first.count)
        if first.count(guess) > 0:
            raise DataFileError(
                f"wrong delimiter: the header of {path} has 1 column with {delimiter!r} but "
                f"{first.count(guess) + 1} with {guess!r}; pass --delimiter {guess!r}"
            )
    check_columns(header, dataset, extra_columns)
    size = len(data) if data is not None else path.stat().st_size
    if not rest.strip() and size <= len(head.encode(encoding)):
        raise DataFileError(f"file has a header but no data rows: {path}")
    return header


def _is_utf8(encoding: str) -> bool:
    return encoding.lower().replace("-", "").replace("_", "") == "utf8"


def _chunks(path: Path, data: bytes | None) -> Iterator[bytes]:
    if data is not None:
        for start in range(0, len(data), _CHUNK):
            yield data[start : start + _CHUNK]
        return
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            yield chunk


def _check_encoding(path: Path, encoding: str, data: bytes | None) -> str:
    """Raise at the first byte that is not valid ``encoding``; return the head as text.

    Chunk by chunk with an incremental decoder (ASCII chunks of a UTF-8 file are skipped), so
    a large file is never held decoded.
    """
    try:
        decoder = codecs.getincrementaldecoder(encoding)()
    except LookupError:
        raise DataFileError(f"unknown encoding {encoding!r}") from None
    utf8, offset, head = _is_utf8(encoding), 0, b""
    for chunk in _chunks(path, data):
        head = head or chunk[:65536]
        pending = len(decoder.getstate()[0])
        try:
            if not (utf8 and not pending and chunk.isascii()):
                decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            at = offset - pending + exc.start
            raise DataFileError(
                f"{path} is not valid {encoding} (byte 0x{exc.object[exc.start]:02x} at offset "
                f"{at}); re-save it as UTF-8 or pass --encoding (e.g. latin-1)"
            ) from None
        offset += len(chunk)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise DataFileError(
            f"{path} is not valid {encoding} (truncated character at offset "
            f"{offset - len(exc.object) + exc.start}); re-save it as UTF-8 or pass --encoding"
        ) from None
    return head.decode(encoding, errors="ignore")


def _scan_lines(source: Path | bytes, encoding: str) -> pl.LazyFrame:
    """Each data line of a CSV as one text value (null for a blank line); header skipped."""
    return pl.scan_csv(
        source,
        has_header=False,
        separator="\x1f",
        quote_char=None,
        infer_schema=False,
        encoding="utf8" if _is_utf8(encoding) else "utf8-lossy",
        new_columns=["line"],
        skip_rows=1,
    )


def _count_fields(lines: pl.Series, delimiter: str) -> pl.Series:
    """Fields per line (quote-aware for single-line quoted fields); 0 for a blank line."""
    # the regex only where a quote could hide a delimiter: most lines have none
    quoted = lines.str.contains('"', literal=True).fill_null(False)
    unquoted = pl.select(
        pl.when(quoted).then(lines.str.replace_all(r'"[^"]*"', "")).otherwise(lines)
    ).to_series()
    counts = unquoted.str.count_matches(delimiter, literal=True) + 1
    return pl.select(pl.when(lines.is_null()).then(0).otherwise(counts)).to_series()


def _field_counts(source: Path | bytes, delimiter: str, encoding: str) -> pl.Series:
    """Fields per data line (quote-aware for single-line quoted fields)."""
    lines = _scan_lines(source, encoding).collect()["line"]
    return _count_fields(lines, delimiter).cast(pl.Int64)


def _row_field_counts(
    source: Path | bytes, frame: pl.DataFrame, delimiter: str, encoding: str
) -> pl.Series | None:
    """Fields per data line of ``source``, read as ``frame``; None if lines are not rows.

    A line without quotes whose length is the sum of its parsed fields' lengths plus one
    delimiter between each has exactly ``frame.width`` fields (a short line lacks delimiters,
    a long one has text beyond the last field); only the other lines are counted one by one.
    """
    width = frame.width
    lengths = frame.select(
        pl.sum_horizontal(pl.all().str.len_bytes().fill_null(0).cast(pl.Int64)) + (width - 1)
    ).to_series()
    lines = _scan_lines(source, encoding).select(
        pl.col("line").str.len_bytes().cast(pl.Int64).alias("bytes"),
        pl.col("line").str.contains('"', literal=True).alias("quoted"),
    )
    stats = lines.collect(engine="streaming")
    if stats.height != frame.height:  # multi-line quoted fields: lines are not rows
        return None
    check = (stats["bytes"] == lengths) & ~stats["quoted"]
    counts = pl.repeat(width, frame.height, eager=True, dtype=pl.Int64)
    odd = (~check.fill_null(False)).arg_true()
    if len(odd):
        text = _scan_lines(source, encoding).with_row_index("i")
        text = text.filter(pl.col("i").is_in(odd.implode())).collect(engine="streaming")
        counts = counts.scatter(odd, _count_fields(text["line"], delimiter).cast(pl.Int64))
    return counts


def read_table(
    path: Path,
    dataset: DatasetSpec,
    delimiter: str = ",",
    encoding: str = "utf-8",
    extra_columns: Literal["reject", "drop"] | None = None,
) -> RawTable:
    """Read every cell as text, after the file-level checks. Malformed lines are flagged."""
    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        header = check_file(path, dataset, delimiter, encoding, extra_columns)
        frame = pl.read_parquet(path).select(pl.all().cast(pl.String))
        counts = pl.Series("fields", [None] * frame.height, dtype=pl.Int64)
        malformed = pl.Series("malformed", [False] * frame.height)
        frame = frame.with_row_index(LINE, offset=1)
    else:
        utf8 = _is_utf8(encoding)
        # UTF-8 is read from the file as it is; another encoding is decoded and re-encoded once
        header = check_file(path, dataset, delimiter, encoding, extra_columns)
        source: Path | bytes = path if utf8 else path.read_bytes().decode(encoding).encode()
        frame = pl.read_csv(
            source, separator=delimiter, infer_schema=False, truncate_ragged_lines=True
        )
        frame = frame.rename({c: c.strip() for c in frame.columns})
        counts = _row_field_counts(source, frame, delimiter, "utf-8")
        if counts is None:  # multi-line quoted fields: cannot map lines to rows
            counts = pl.repeat(len(header), frame.height, eager=True, dtype=pl.Int64)
        del source
        malformed = counts != len(header)
        frame = frame.with_row_index(LINE, offset=2)
    frame = frame.with_columns(pl.col(LINE).cast(pl.Int64))
    # extra columns got here only in "drop" mode (check_file rejects them otherwise)
    dropped = tuple(c for c in header if c not in set(dataset.column_names))
    return RawTable(frame, malformed.alias("malformed"), counts.alias("fields"), path, dropped)


# --- parsing -----------------------------------------------------------------------------

_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")


def _parse_expr(col: str, dtype: pl.DataType) -> pl.Expr:
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


def parse_table(raw: RawTable, dataset: DatasetSpec) -> ParsedTable:
    """Null markers -> null, then each contract column cast to its type.

    A value that is present but does not parse becomes null in ``frame`` and a failure
    ``(row, column, "type: <dtype>", value)``: pandera then sees typed columns only, so a bad
    value never cascades into dtype errors. Every value is read as if stripped; the common
    values (plain numbers, unpadded words that are no null marker) take one cast, in one
    multi-threaded select, and only the rest are cleaned and parsed one column at a time.
    """
    cols = dataset.column_names
    markers = list(dataset.null_markers)
    dtypes = {c: dataset.columns[c].dtype for c in cols}
    fast = {c: e for c in cols if (e := _fast_expr(c, dtypes[c])) is not None}
    exprs: list[pl.Expr | str] = [LINE]
    for c, e in fast.items():
        # a null marker the fast path would take as a value ("-1", or any word) goes slow
        taken = pl.DataFrame({c: markers}, schema={c: pl.String}).select(e)[c].is_not_null()
        trap = [m for m, ok in zip(markers, taken, strict=True) if ok]
        e = pl.when(~pl.col(c).is_in(trap)).then(e) if trap else e
        exprs.append(e.alias(c))
    both = raw.frame.lazy().select(exprs).collect()  # lazy: the casts are shared (CSE)
    columns, failures = [both[LINE]], []
    for c in cols:
        if c in fast:  # only the values the fast path did not take
            idx = (both[c].is_null() & raw.frame[c].is_not_null()).arg_true()
        else:
            idx = pl.int_range(raw.frame.height, eager=True, dtype=pl.UInt32)
        text = _clean(raw.frame[c].gather(idx), markers)
        parsed = text.to_frame(c).select(_parse_expr(c, dtypes[c]).alias(c)).to_series()
        if c not in fast:
            value = parsed
        elif len(idx):
            value = both[c].scatter(idx, parsed)
        else:
            value = both[c]
        columns.append(value.alias(c))
        bad = (text.is_not_null() & parsed.is_null()).arg_true()
        if len(bad):
            failures.append(
                pl.DataFrame(
                    {
                        "row": idx.gather(bad).cast(pl.Int64),
                        "column": pl.repeat(c, len(bad), eager=True),
                        "check": pl.repeat(f"type: not a valid {dtypes[c]}", len(bad), eager=True),
                        "value": text.gather(bad),
                    }
                )
            )
    frame = pl.DataFrame(columns)
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
    return ParsedTable(frame, raw.frame, _concat_failures(failures))


def _without_line(frame: pl.DataFrame) -> pl.DataFrame:
    """The frame without its line numbers, sharing its columns (``drop`` would copy a frame
    whose columns are chunked differently, as the parsed frame's are)."""
    return pl.DataFrame([s for s in frame.get_columns() if s.name != LINE])


def _concat_failures(parts: list[pl.DataFrame]) -> pl.DataFrame:
    schema = {"row": pl.Int64, "column": pl.String, "check": pl.String, "value": pl.String}
    if not parts:
        return pl.DataFrame(schema=schema)
    return pl.concat([p.cast(schema) for p in parts], how="vertical")


# --- validation --------------------------------------------------------------------------


def validate_table(parsed: ParsedTable, dataset: DatasetSpec) -> pl.DataFrame:
    """Run the pandera contract (lazy, on the collected frame); return failures per row."""
    frame = _without_line(parsed.frame)
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
    parts.append(duplicate_id_failures(parsed.frame, dataset, _concat_failures(parts)))
    return _concat_failures(parts).unique(maintain_order=True)


def duplicate_id_failures(
    frame: pl.DataFrame, dataset: DatasetSpec, failures: pl.DataFrame
) -> pl.DataFrame:
    """Among rows that are otherwise valid, a repeated id keeps its first row only."""
    idc = dataset.id_column
    if idc is None or frame[idc].n_unique() == frame.height:  # no id repeats (cheap to know)
        return _concat_failures([])
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
        accepted = _without_line(parsed.frame)
    else:
        keep = pl.repeat(True, parsed.frame.height, eager=True).scatter(bad, False)
        accepted = _without_line(parsed.frame.filter(keep))
    quarantined = parsed.raw[bad].with_columns(reasons[REASONS])
    return Split(accepted, quarantined, failures)


# --- versioning and storage --------------------------------------------------------------


def data_version(frame: pl.DataFrame) -> str:
    """Content hash of a frame: column names, dtypes and every value, in order.

    Stable for the same content with the same polars version (polars' row hash is not
    promised stable across polars releases; the manifest records the polars version).
    """
    h = hashlib.sha256()
    h.update(json.dumps([[c, str(t)] for c, t in frame.schema.items()]).encode())
    if frame.height:
        for seed in (0, 1):  # two 64-bit row hashes: collisions are out of reach
            h.update(frame.hash_rows(seed=seed).to_numpy().tobytes())
    h.update(str(frame.height).encode())
    return h.hexdigest()[:16]


def _write_parquet(frame: pl.DataFrame, path: Path) -> None:
    """Atomically, written straight to the temp file: no in-memory copy of the encoded Parquet."""
    atomic_write(path, lambda fh: frame.write_parquet(fh, compression="lz4"))


def save_snapshot(split: Split, dataset: DatasetSpec, source: Path, settings=None) -> Snapshot:
    """Write the accepted rows (named by content hash), the quarantine and the manifest."""
    from tasks.settings import get_settings

    settings = settings or get_settings()
    version = data_version(split.accepted)
    snap = settings.snapshots_dir / f"{version}.parquet"
    manifest = settings.snapshots_dir / f"{version}.json"
    quarantine = settings.quarantine_dir / f"{version}.parquet"
    if not snap.exists():
        _write_parquet(split.accepted, snap)
    _write_parquet(split.quarantined, quarantine)
    info = {
        "data_version": version,
        "dataset": dataset.name,
        "schema_hash": dataset.schema_hash,
        "source": str(Path(source).resolve()),
        "rows_in": split.accepted.height + split.quarantined.height,
        "rows_accepted": split.accepted.height,
        "rows_quarantined": split.quarantined.height,
        "snapshot": str(snap),
        "quarantine": str(quarantine),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "polars": pl.__version__,
    }
    atomic_write(manifest, json.dumps(info, indent=2).encode())
    return Snapshot(version, snap, manifest, quarantine)


def load_snapshot(ref: str | Path, settings=None) -> pl.DataFrame:
    """A snapshot by data version or by path."""
    from tasks.settings import get_settings

    path = Path(ref)
    if not path.suffix:
        path = (settings or get_settings()).snapshots_dir / f"{ref}.parquet"
    if not path.exists():
        raise FileNotFoundError(f"no snapshot {ref!r} (looked for {path})")
    return pl.read_parquet(path)


def load_manifest(version: str, settings=None) -> dict[str, Any]:
    from tasks.settings import get_settings

    path = (settings or get_settings()).snapshots_dir / f"{version}.json"
    return json.loads(path.read_text())


# --- data quality ------------------------------------------------------------------------


def _check_kind(check: str) -> str:
    if check.startswith("type:"):
        return "type"
    if check.startswith("malformed"):
        return "malformed"
    if check.startswith("duplicate id"):
        return "duplicate_id"
    if check.startswith("isin") or check.startswith("str_matches"):
        return "domain"
    if check.startswith(("greater_than", "less_than", "in_range", "equal_to")):
        return "range"
    if check == "not_nullable":
        return "missing"
    return "rule"


def quality_report(
    parsed: ParsedTable,
    split: Split,
    dataset: DatasetSpec,
    thresholds: QualityThresholds,
    now: datetime | None = None,
) -> QualityReport:
    """Completeness, consistency, accuracy and timeliness, with the thresholds that failed."""
    frame = _without_line(parsed.frame)
    rows = max(frame.height, 1)
    missing = {c: frame[c].null_count() / rows for c in frame.columns}
    checks = split.failures["check"].unique().to_list()
    kinds = split.failures.with_columns(
        pl.col("check")
        .replace_strict({c: _check_kind(c) for c in checks}, return_dtype=pl.String)
        .alias("kind")
    )
    by_kind = dict(kinds.group_by("kind").len().iter_rows())
    by_check = (
        kinds.group_by("column", "check")
        .len()
        .sort(["len", "column", "check"], descending=[True, False, False], nulls_last=True)
        .head(50)
        .to_dicts()
    )
    duplicates = int(by_kind.get("duplicate_id", 0))
    quarantine_share = split.quarantined.height / rows
    data: dict[str, Any] = {
        "dataset": dataset.name,
        "rows_in": frame.height,
        "rows_accepted": split.accepted.height,
        "rows_quarantined": split.quarantined.height,
        "completeness": {"missing_share": missing},
        "consistency": {
            "duplicate_ids": duplicates,
            "type_violations": int(by_kind.get("type", 0)),
            "domain_violations": int(by_kind.get("domain", 0)),
            "malformed_lines": int(by_kind.get("malformed", 0)),
            "rule_violations": int(by_kind.get("rule", 0)),
        },
        "accuracy": {"range_violations": int(by_kind.get("range", 0))},
        "timeliness": {},
        "failures_by_check": by_check,
        "thresholds": vars(thresholds),
    }
    failed = [
        f"completeness: column {c!r} is {share:.1%} missing "
        f"(max {thresholds.max_missing_share:.0%})"
        for c, share in missing.items()
        if share > thresholds.max_missing_share
    ]
    if quarantine_share > thresholds.max_quarantine_share:
        failed.append(
            f"consistency: {quarantine_share:.1%} of rows quarantined "
            f"(max {thresholds.max_quarantine_share:.0%})"
        )
    if duplicates / rows > thresholds.max_duplicate_share:
        failed.append(
            f"consistency: {duplicates} duplicate ids ({duplicates / rows:.1%}, "
            f"max {thresholds.max_duplicate_share:.0%})"
        )
    if dataset.event_time and split.accepted.height:
        latest = split.accepted[dataset.event_time].max()
        now = now or datetime.now(UTC)
        if latest is not None:
            if getattr(latest, "tzinfo", None) is None and hasattr(latest, "replace"):
                latest = latest.replace(tzinfo=UTC)
            age_h = (now - latest).total_seconds() / 3600
            data["timeliness"] = {"latest_event": str(latest), "age_hours": age_h}
            limit = thresholds.max_staleness_hours
            if limit is not None and age_h > limit:
                failed.append(f"timeliness: newest event is {age_h:.1f} h old (max {limit} h)")
    data["failed"] = failed
    data["passed"] = not failed
    return QualityReport(data, failed)


def write_quality_report(report: QualityReport, directory: Path, stem: str) -> QualityReport:
    """Write the report as JSON and as a Markdown page a person can read."""
    d = report.data
    lines = [
        f"# Data quality: {d['dataset']} ({stem})",
        "",
        f"**{'PASSED' if d['passed'] else 'FAILED'}** — {d['rows_in']} rows in, "
        f"{d['rows_accepted']} accepted, {d['rows_quarantined']} quarantined.",
        "",
    ]
    lines += [f"- ❌ {f}" for f in d["failed"]] + [""]
    lines += ["## Completeness (missing share)", "", "| column | missing |", "|---|---|"]
    lines += [f"| {c} | {s:.2%} |" for c, s in d["completeness"]["missing_share"].items()]
    lines += ["", "## Consistency", ""]
    lines += [f"- {k}: {v}" for k, v in d["consistency"].items()]
    lines += ["", "## Accuracy", ""] + [f"- {k}: {v}" for k, v in d["accuracy"].items()]
    lines += ["", "## Timeliness", ""]
    lines += [f"- {k}: {v}" for k, v in d["timeliness"].items()] or ["- no event-time column"]
    lines += ["", "## Failures by check", "", "| column | check | rows |", "|---|---|---|"]
    lines += [f"| {r['column']} | {r['check']} | {r['len']} |" for r in d["failures_by_check"]]
    json_path = directory / f"{stem}.json"
    page_path = directory / f"{stem}.md"
    atomic_write(json_path, json.dumps(d, indent=2, default=str).encode())
    atomic_write(page_path, "\n".join(lines).encode())
    report.json_path, report.page_path = json_path, page_path
    return report


# --- the whole step, for callers outside a flow -------------------------------------------


@dataclass(frozen=True)
class IngestResult:
    data_version: str
    rows_in: int
    rows_accepted: int
    rows_quarantined: int
    snapshot: Path
    quarantine: Path
    manifest: Path
    report: Path | None
    quality_passed: bool
    quality_failures: list[str]
    accepted: pl.DataFrame
    quarantined: pl.DataFrame

    def summary(self) -> dict[str, Any]:
        """The JSON-able part (no frames)."""
        return {
            "data_version": self.data_version,
            "rows_in": self.rows_in,
            "rows_accepted": self.rows_accepted,
            "rows_quarantined": self.rows_quarantined,
            "snapshot": str(self.snapshot),
            "quarantine": str(self.quarantine),
            "manifest": str(self.manifest),
            "report": str(self.report) if self.report else None,
            "quality_passed": self.quality_passed,
            "quality_failures": self.quality_failures,
        }


def make_result(snapshot: Snapshot, split: Split, report: QualityReport) -> IngestResult:
    return IngestResult(
        data_version=snapshot.data_version,
        rows_in=split.accepted.height + split.quarantined.height,
        rows_accepted=split.accepted.height,
        rows_quarantined=split.quarantined.height,
        snapshot=snapshot.path,
        quarantine=snapshot.quarantine_path,
        manifest=snapshot.manifest_path,
        report=report.page_path,
        quality_passed=not report.failed,
        quality_failures=list(report.failed),
        accepted=split.accepted,
        quarantined=split.quarantined,
    )


def ingest_file(
    path: Path | str,
    dataset: DatasetSpec,
    *,
    delimiter: str = ",",
    encoding: str = "utf-8",
    extra_columns: Literal["reject", "drop"] | None = None,
    thresholds: QualityThresholds | None = None,
    settings=None,
) -> IngestResult:
    """Read, parse, validate, quarantine, version and report one file (no Prefect needed).

    Quality-threshold failures do not raise here: see ``IngestResult.quality_passed``.
    """
    from tasks.settings import get_settings

    settings = settings or get_settings()
    raw = read_table(Path(path), dataset, delimiter, encoding, extra_columns)
    parsed = parse_table(raw, dataset)
    split = split_rows(parsed, validate_table(parsed, dataset))
    snapshot = save_snapshot(split, dataset, raw.source, settings)
    report = quality_report(parsed, split, dataset, thresholds or QualityThresholds())
    stem = f"{snapshot.data_version}-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    write_quality_report(report, settings.reports_dir / "ingest", stem)
    return make_result(snapshot, split, report)


def read_valid_rows(path: Path | str, dataset: DatasetSpec, delimiter: str = ",") -> Split:
    """Parse and validate a file without writing anything (for simulation and scoring)."""
    parsed = parse_table(read_table(Path(path), dataset, delimiter), dataset)
    return split_rows(parsed, validate_table(parsed, dataset))


def write_table(frame: pl.DataFrame, path: Path | str) -> Path:
    """Write a frame as CSV or Parquet, by the file's suffix (atomically)."""
    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        atomic_write(path, lambda fh: frame.write_parquet(fh, compression="zstd"))
    else:
        atomic_write(path, frame.write_csv)
    return path
