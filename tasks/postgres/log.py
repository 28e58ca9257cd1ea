"""The prediction and feedback logs as PostgreSQL tables: COPY in, COPY out.

Write: one ``COPY ... FROM STDIN`` in PostgreSQL's binary format (:mod:`tasks.postgres.pgcopy`)
per flushed batch, in one transaction, so a batch is in the table whole or not at all, as a
Parquet file is whole or absent. Columns the table lacks (the dataset's input columns, known
only when the service scores) are added first under an advisory lock; a column whose type no
longer fits is widened (integer to float, anything else to text), as the Parquet reader relaxes
files that disagree.

Read: ``COPY (SELECT ...) TO STDOUT`` as CSV parsed by polars with the table's column types,
the time filter done by PostgreSQL on the ``ts`` index, oldest first (ties in insertion order).
"""

from __future__ import annotations

import contextlib
import io
import queue
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING

import polars as pl

from tasks.postgres import pgcopy
from tasks.postgres.db import SCHEMA, ensure_schema, open_connection

if TYPE_CHECKING:
    from psycopg2.extensions import connection as Connection

TABLES = ("predictions", "feedback")
_COLUMN_LOCK = 0x64726967  # pg_advisory_xact_lock key of column additions
_INTERNAL = ("seq",)  # table columns that are not log columns
COPY_CHUNK_ROWS = 20_000  # rows encoded per slice while COPY sends the previous one

TEXT, BIGINT, DOUBLE, BOOLEAN, DATE = "text", "bigint", "double precision", "boolean", "date"
TSTZ, TS = "timestamp with time zone", "timestamp without time zone"
_EPOCH_US = "(extract(epoch from {c}) * 1000000)::bigint"
# PostgreSQL type -> (SELECT expression, type polars parses, type returned)
_READ: dict[str, tuple[str, pl.DataType, pl.DataType]] = {
    TEXT: ("{c}", pl.String, pl.String),
    BIGINT: ("{c}", pl.Int64, pl.Int64),
    DOUBLE: ("{c}", pl.Float64, pl.Float64),
    BOOLEAN: ("{c}::int", pl.Int8, pl.Boolean),
    DATE: ("({c} - date '1970-01-01')", pl.Int32, pl.Date),
    TSTZ: (_EPOCH_US, pl.Int64, pl.Datetime("us", "UTC")),
    TS: (_EPOCH_US, pl.Int64, pl.Datetime("us")),
}
_OTHER = ("{c}::text", pl.String, pl.String)  # any other type: read as its text


def pg_type(dtype: pl.DataType) -> str:
    """The column type a polars column is stored as (unknown types as text)."""
    if dtype == pl.Boolean:
        return BOOLEAN
    if dtype.is_integer():
        return BIGINT
    if dtype.is_float():
        return DOUBLE
    if isinstance(dtype, pl.Datetime):
        return TSTZ if dtype.time_zone else TS
    if dtype == pl.Date:
        return DATE
    return TEXT


def _fits(existing: str, new: str) -> bool:
    return existing in (new, TEXT) or (existing == DOUBLE and new == BIGINT)


def _widened(existing: str, new: str) -> str:
    return DOUBLE if {existing, new} == {BIGINT, DOUBLE} else TEXT


def _qualified(table: str) -> str:
    if table not in TABLES:
        raise ValueError(f"unknown log table {table!r}; one of {TABLES}")
    return f"{SCHEMA}.{table}"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def table_columns(conn: Connection, table: str) -> dict[str, str]:
    """The log columns of ``table`` in table order, with their PostgreSQL types."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            (SCHEMA, table),
        )
        return {name: kind for name, kind in cur.fetchall() if name not in _INTERNAL}


def fit_columns(
    conn: Connection, table: str, frame: pl.DataFrame, known: dict[str, str] | None = None
) -> dict[str, str]:
    """Add the columns ``frame`` brings and widen those it no longer fits; return the columns.

    In the caller's transaction: the advisory lock is held until it ends, so hosts adding the
    same column take turns, and a rolled-back write takes its columns with it.

    An all-null column of no type fits any column and adds none (its type is not known yet).
    """
    wanted = {c: pg_type(t) for c, t in frame.schema.items() if t != pl.Null}
    known = known or {}
    if all(c in known and _fits(known[c], t) for c, t in wanted.items()):
        return known
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_COLUMN_LOCK,))
        columns = table_columns(conn, table)  # again, under the lock: another host may have
        for name, kind in wanted.items():
            if name not in columns:
                cur.execute(f"ALTER TABLE {_qualified(table)} ADD COLUMN {_ident(name)} {kind}")
            elif not _fits(columns[name], kind):
                wider = _widened(columns[name], kind)
                cur.execute(
                    f"ALTER TABLE {_qualified(table)} ALTER COLUMN {_ident(name)}"
                    f" TYPE {wider} USING {_ident(name)}::{wider}"
                )
    return table_columns(conn, table)


class _Chunks(io.RawIOBase):
    """The byte strings ``chunks`` yields, as a file COPY reads, produced on a thread while
    COPY sends the previous one (NumPy, Arrow and libpq release the GIL for most of it)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._queue: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=2)
        self._pending = b""
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(chunks,), daemon=True)
        self._thread.start()

    def _put(self, item: bytes | BaseException | None) -> None:
        while not self._done.is_set():
            with contextlib.suppress(queue.Full):
                return self._queue.put(item, timeout=0.5)

    def _produce(self, chunks: Iterator[bytes]) -> None:
        try:
            for chunk in chunks:
                self._put(chunk)
            self._put(None)
        except BaseException as exc:  # handed to the reader, raised in the COPY's thread
            self._put(exc)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while not self._pending:
            item = self._queue.get()
            if item is None:
                self._queue.put(None)  # stays at the end for any later read
                return b""
            if isinstance(item, BaseException):
                raise item
            self._pending = item
        size = len(self._pending) if size is None or size < 0 else size
        out, self._pending = self._pending[:size], self._pending[size:]
        return out

    def close(self) -> None:
        self._done.set()
        super().close()


def copy_in(conn: Connection, table: str, frame: pl.DataFrame, columns: dict[str, str]) -> None:
    """COPY ``frame``'s rows into ``table`` (in the caller's transaction), each value in the
    binary format of its table column (``columns``, as :func:`fit_columns` returns them)."""
    if frame.height == 0:
        return
    frame = frame.with_columns(pl.col(pl.Categorical, pl.Enum).cast(pl.String))
    order = pgcopy.copy_order(frame, columns)
    names = ", ".join(_ident(c) for c in order)
    sql = f"COPY {_qualified(table)} ({names}) FROM STDIN WITH (FORMAT binary)"
    stream = pgcopy.binary_copy(frame, columns, order, COPY_CHUNK_ROWS)
    with _Chunks(stream) as chunks, conn.cursor() as cur:
        cur.copy_expert(sql, chunks, size=1 << 20)


class PostgresSink:
    """Where a :class:`tasks.buffered_log.BufferedLog` writes when the log is on PostgreSQL.

    One connection, reopened after a failure; each write is one transaction (a failed one
    is rolled back whole and the log retries the batch).
    """

    def __init__(self, url: str, table: str) -> None:
        _qualified(table)
        self.url = url
        self.table = table
        self._conn: Connection | None = None
        self._columns: dict[str, str] = {}

    def open(self) -> None:
        ensure_schema(self.url)

    def write(self, frame: pl.DataFrame, segment: str = "") -> str:
        """One batch in one transaction (``segment`` names the journal it came from)."""
        if self._conn is None or self._conn.closed:
            self._conn = open_connection(self.url)
        conn = self._conn
        try:
            self._columns = fit_columns(conn, self.table, frame, self._columns)
            copy_in(conn, self.table, frame, self._columns)
            conn.commit()
        except Exception:
            self.close()  # a broken or aborted connection is not reused
            self._columns = {}  # the columns it added, if any, were rolled back
            raise
        return f"{self.table}:+{frame.height}"

    def written(self, segment: str) -> bool:
        """Not tracked per segment: a journal recovered after a crash between the COPY's commit
        and the journal's delete is written again (at least once; see tasks.buffered_log)."""
        return False

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def read_log(
    url: str, table: str, since: datetime | None = None, until: datetime | None = None
) -> pl.DataFrame:
    """Rows of ``table`` with ``since <= ts < until``, oldest first, typed by the table."""
    ensure_schema(url)
    conn = open_connection(url)
    try:
        return read_table(conn, table, since, until)
    finally:
        conn.close()


def read_table(
    conn: Connection, table: str, since: datetime | None = None, until: datetime | None = None
) -> pl.DataFrame:
    """:func:`read_log` on an open connection (in its transaction)."""
    columns = table_columns(conn, table)
    select = ", ".join(
        f"{_READ.get(kind, _OTHER)[0].format(c=_ident(c))} AS {_ident(c)}"
        for c, kind in columns.items()
    )
    where, params = ["true"], []
    if since is not None:
        where.append("ts >= %s")
        params.append(since)
    if until is not None:
        where.append("ts < %s")
        params.append(until)
    buf = io.BytesIO()
    with conn.cursor() as cur:
        query = cur.mogrify(
            f"SELECT {select} FROM {_qualified(table)} WHERE {' AND '.join(where)}"
            " ORDER BY ts, seq",
            params,
        ).decode()
        cur.copy_expert(f"COPY ({query}) TO STDOUT WITH (FORMAT csv, HEADER)", buf)
    parsed = {c: _READ.get(k, _OTHER)[1] for c, k in columns.items()}
    final = {c: _READ.get(k, _OTHER)[2] for c, k in columns.items()}
    buf.seek(0)
    frame = pl.read_csv(buf, schema=parsed) if buf.getbuffer().nbytes else pl.DataFrame()
    return frame.cast(final) if frame.width else pl.DataFrame(schema=final)
