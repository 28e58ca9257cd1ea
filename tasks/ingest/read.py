"""Reading a data file: file-level checks (one clear error each), every cell as text, and the
rows whose field count differs from the header's."""

from __future__ import annotations

import codecs
import difflib
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import polars as pl

from schemas.base import DatasetSpec
from tasks.ingest.config import IngestOptions
from tasks.ingest.table import LINE, DataFileError, RawTable

_OTHER_DELIMITERS = (";", "\t", "|")
_CHUNK = 1 << 24  # bytes per read when checking a file's encoding


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
        raise DataFileError(  # a file of another dataset is the usual cause: say which one
            f"target column {dataset.target!r} is absent{_close(dataset.target, extra)} "
            f"(dataset {dataset.name!r}; another dataset's file needs --dataset NAME)"
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


def check_file(path: Path, dataset: DatasetSpec, options: IngestOptions | None = None) -> list[str]:
    """File-level checks before any row is read; returns the header. Raises DataFileError.

    ``options`` say how to read it (delimiter, encoding, extra columns). The file is streamed:
    its encoding is checked chunk by chunk, never decoded whole.
    """
    options = options or IngestOptions()
    delimiter, encoding, extra_columns = options.delimiter, options.encoding, options.extra_columns
    delimiter = delimiter or dataset.delimiter
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
    head = _check_encoding(path, encoding)
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
    if not rest.strip() and path.stat().st_size <= len(head.encode(encoding)):
        raise DataFileError(f"file has a header but no data rows: {path}")
    return header


def _is_utf8(encoding: str) -> bool:
    return encoding.lower().replace("-", "").replace("_", "") == "utf8"


def _chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            yield chunk


def _check_encoding(path: Path, encoding: str) -> str:
    """Raise at the first byte that is not valid ``encoding``; return the head as text.

    Chunk by chunk with an incremental decoder (ASCII chunks of a UTF-8 file are skipped), so
    a large file is never held decoded.
    """
    try:
        decoder = codecs.getincrementaldecoder(encoding)()
    except LookupError:
        raise DataFileError(f"unknown encoding {encoding!r}") from None
    utf8, offset, head = _is_utf8(encoding), 0, b""
    for chunk in _chunks(path):
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


def read_table(path: Path, dataset: DatasetSpec, options: IngestOptions | None = None) -> RawTable:
    """Read every cell as text, after the file-level checks. Malformed lines are flagged."""
    options = options or IngestOptions()
    delimiter, encoding = options.delimiter or dataset.delimiter, options.encoding
    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        header = check_file(path, dataset, options)
        frame = pl.read_parquet(path).select(pl.all().cast(pl.String))
        counts = pl.Series("fields", [None] * frame.height, dtype=pl.Int64)
        malformed = pl.Series("malformed", [False] * frame.height)
        frame = frame.with_row_index(LINE, offset=1)
    else:
        utf8 = _is_utf8(encoding)
        # UTF-8 is read from the file as it is; another encoding is decoded and re-encoded once
        header = check_file(path, dataset, options)
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
