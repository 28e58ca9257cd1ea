"""Rows for ``COPY ... FROM STDIN WITH (FORMAT binary)``, encoded a column at a time.

PostgreSQL parses the binary format far faster than CSV (no text-to-number or timestamp
parsing on the server, which is what bounded the CSV COPY into the prediction log). Each value
is sent in the receive format of the table column it goes to (the binary format is not
converted on the way in), so the caller passes the table's column types. The encoding is
vectorised: the non-null fixed-width fields of every row form one NumPy record; text and
nullable fields are length-prefixed Arrow binaries; Arrow joins them row by row.

Format (PostgreSQL docs, "COPY", binary format): an 11-byte signature, a flags word and a
header-extension length; per row a 16-bit field count, then per field a 32-bit length (-1 for
NULL) and the value in network byte order; a 16-bit -1 ends the data.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags 0, no header extension
TRAILER = b"\xff\xff"
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in microseconds since 1970-01-01
_PG_EPOCH_DAYS = 10_957
_EMPTY = pa.scalar(b"", pa.large_binary())

# PostgreSQL type -> (polars type the column is cast to, wire type; None: text, any length)
WIRE: dict[str, tuple[pl.DataType, str | None]] = {
    "boolean": (pl.Boolean, "u1"),
    "bigint": (pl.Int64, ">i8"),
    "double precision": (pl.Float64, ">f8"),
    "timestamp with time zone": (pl.Datetime("us", "UTC"), ">i8"),
    "timestamp without time zone": (pl.Datetime("us"), ">i8"),
    "date": (pl.Date, ">i4"),
    "text": (pl.String, None),
}


def copy_order(frame: pl.DataFrame, types: dict[str, str]) -> list[str]:
    """The columns a binary COPY of ``frame`` sends, in the order it sends them: non-null
    fixed-width ones first (one record per row), then the rest; all-null ones not at all (they
    are NULL by default)."""
    nulls = {c: frame.get_column(c).null_count() for c in frame.columns}
    sent = [c for c in frame.columns if nulls[c] < frame.height]
    fixed = [c for c in sent if nulls[c] == 0 and _wire(c, types[c])[1] is not None]
    return fixed + [c for c in sent if c not in fixed]


def _wire(name: str, pg_type: str) -> tuple[pl.DataType, str | None]:
    if pg_type not in WIRE:
        raise ValueError(f"column {name!r}: no binary COPY encoding for type {pg_type!r}")
    return WIRE[pg_type]


def _values(column: pl.Series, pg_type: str) -> np.ndarray:
    """A fixed-width column's values as PostgreSQL receives them (nulls as 0)."""
    dtype, wire = _wire(column.name, pg_type)
    values = column.cast(dtype).to_physical().fill_null(0).to_numpy()
    if pg_type.startswith("timestamp"):
        values = values - _PG_EPOCH_US
    elif pg_type == "date":
        values = values - _PG_EPOCH_DAYS
    return values.astype(wire)


def _binary(data: np.ndarray, sizes: np.ndarray) -> pa.Array:
    """An Arrow binary array of ``len(sizes)`` values cut from ``data``'s bytes."""
    offsets = np.zeros(len(sizes) + 1, np.int64)
    np.cumsum(sizes, out=offsets[1:])
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(data))]
    return pa.LargeBinaryArray.from_buffers(pa.large_binary(), len(sizes), buffers)


def _parts(column: pl.Series, pg_type: str) -> list[pa.Array]:
    """A field that is text or may be NULL: its length words, then its bytes."""
    valid = column.is_not_null().to_numpy()
    n = len(column)
    if _wire(column.name, pg_type)[1] is None:
        text = column.cast(pl.String)
        lengths = text.str.len_bytes().fill_null(0).to_numpy().astype(np.int64)
        data = text.fill_null("").to_arrow().cast(pa.large_binary())
    else:
        values = _values(column, pg_type)
        lengths = np.where(valid, values.dtype.itemsize, 0)
        data = _binary(values[valid].view(np.uint8), lengths)
    words = np.where(valid, lengths, -1).astype(">i4")
    return [_binary(words.view(np.uint8), np.full(n, 4)), data]


def encode_rows(frame: pl.DataFrame, types: dict[str, str], columns: list[str]) -> bytes:
    """``frame``'s ``columns`` as binary COPY rows (no signature, no trailer), each encoded as
    the table's column type ``types[column]``; ``columns`` as :func:`copy_order` gives them."""
    n = frame.height
    fixed: list[str] = []  # the leading non-null fixed-width columns: one record per row
    for name, nulls in zip(columns, frame.select(columns).null_count().row(0), strict=True):
        if nulls or _wire(name, types[name])[1] is None:
            break
        fixed.append(name)
    values = [_values(frame.get_column(c), types[c]) for c in fixed]
    layout = [("count", ">i2")]
    for i, v in enumerate(values):
        layout += [(f"length{i}", ">i4"), (f"value{i}", v.dtype.str)]
    record = np.empty(n, np.dtype(layout))
    record["count"] = len(columns)
    for i, v in enumerate(values):
        record[f"length{i}"] = v.dtype.itemsize
        record[f"value{i}"] = v
    rest = columns[len(fixed) :]
    if not rest:
        return record.tobytes()
    parts = [p for c in rest for p in _parts(frame.get_column(c), types[c])]
    head = _binary(record.view(np.uint8), np.full(n, record.dtype.itemsize))
    rows = pc.binary_join_element_wise(head, *parts, _EMPTY)
    offsets = np.frombuffer(rows.buffers()[1], np.int64)[rows.offset : rows.offset + n + 1]
    return rows.buffers()[2].slice(offsets[0], offsets[-1] - offsets[0]).to_pybytes()


def binary_copy(
    frame: pl.DataFrame, types: dict[str, str], columns: list[str], rows: int
) -> Iterator[bytes]:
    """The whole COPY data stream of ``frame``'s ``columns``, ``rows`` rows at a time."""
    yield SIGNATURE
    for start in range(0, frame.height, rows):
        yield encode_rows(frame.slice(start, rows), types, columns)
    yield TRAILER
