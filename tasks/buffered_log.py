"""A log of rows that is durable before it answers: a group-committed journal, then Parquet.

Writers append cheap in-memory entries on the request path and get a future back. A background
thread takes everything appended since its last turn, turns it into one frame (``to_frame``
runs there, off the request path), appends that frame to a journal file as one checksummed
record, fsyncs, and only then resolves the futures: a request that awaits its future is
answered after its row is on disk (group commit: one fsync covers every request that arrived
meanwhile). Every ``flush_seconds`` the journalled frames are written to the log's sink as one
batch and the journal segment is deleted. Sinks: :class:`ParquetSink` (the embedded default:
one Parquet file per batch, temp + fsync + rename, see :func:`tasks.io.atomic_write`) and
``tasks.postgres.log.PostgresSink`` (one COPY transaction per batch, for several hosts). The
journal is always local: on PostgreSQL a crash between the COPY's commit and the journal's
delete can write a batch twice when the journal is recovered (at least once, never lost).

A SIGKILL leaves whole Parquet files and a journal whose records up to the last fsync are
whole (a torn tail is an unacknowledged write and is dropped). :func:`recover_orphans` turns
a dead writer's journal into a Parquet file (named after the segment, so running it twice, or
after a crash between the Parquet write and the journal delete, writes nothing twice); a log
recovers its directory when it starts, and the readers of ``tasks.predlog`` before reading. A
live writer holds an ``flock`` on its segment, so several workers share one directory safely.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import io
import logging
import os
import secrets
import struct
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from tasks.io import atomic_write

log = logging.getLogger(__name__)

FLUSH_SECONDS = 2.0  # how long rows stay in the journal before they join a Parquet file
MAX_BUFFER_ROWS = 50_000  # write the Parquet file early past this many journalled rows
JOURNAL_SUFFIX = ".journal"
_HEADER = struct.Struct("<II")  # payload length, crc32 of the payload


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _ipc(frame: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.write_ipc_stream(buf, compression="uncompressed")
    return buf.getvalue()


def read_journal(path: Path) -> list[pl.DataFrame]:
    """The whole records of a journal segment, in order (a torn or corrupt tail is dropped)."""
    data, frames, at = path.read_bytes(), [], 0
    while at + _HEADER.size <= len(data):
        size, crc = _HEADER.unpack_from(data, at)
        payload = data[at + _HEADER.size : at + _HEADER.size + size]
        if len(payload) != size or zlib.crc32(payload) != crc:
            break
        frames.append(pl.read_ipc_stream(io.BytesIO(payload)))
        at += _HEADER.size + size
    return frames


class LogSink(Protocol):
    """Where a :class:`BufferedLog` puts its batches: each ``write`` stores one batch whole or
    not at all; ``written(segment)`` says whether a journal segment's batch is already there."""

    def open(self) -> None: ...
    def write(self, frame: pl.DataFrame, segment: str) -> Path | str: ...
    def written(self, segment: str) -> bool: ...
    def close(self) -> None: ...


class ParquetSink:
    """One Parquet file per batch in ``directory``, named after its journal segment."""

    def __init__(self, directory: Path, prefix: str) -> None:
        self.directory = directory
        self.prefix = prefix

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)

    def write(self, frame: pl.DataFrame, segment: str) -> Path:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = self.directory / f"{self.prefix}-{stamp}-{segment}.parquet"
        buf = io.BytesIO()
        frame.write_parquet(buf, compression="zstd", statistics=True)
        atomic_write(path, buf.getvalue())
        return path

    def written(self, segment: str) -> bool:
        return any(self.directory.glob(f"{self.prefix}-*-{segment}.parquet"))

    def close(self) -> None: ...


def recover_orphans(directory: Path, sink: LogSink | None = None) -> int:
    """Write every journal no live writer holds to ``sink`` (default: Parquet files beside it);
    return the rows recovered."""
    rows = 0
    for journal in sorted(directory.glob(f"*{JOURNAL_SUFFIX}")):
        with contextlib.suppress(FileNotFoundError), open(journal, "rb") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live writer's segment
            prefix, _, segment = journal.stem.partition("~")
            target = sink or ParquetSink(directory, prefix)
            if not target.written(segment):
                frames = read_journal(journal)
                if frames:
                    frame = pl.concat(frames, how="diagonal_relaxed")
                    target.write(frame, segment)
                    rows += frame.height
            journal.unlink()
    if rows:
        log.warning("recovered %d journalled rows in %s", rows, directory)
    return rows


class BufferedLog:
    """Entries appended in memory, durable in a journal within one fsync, Parquet per flush.

    ``to_frame`` turns a list of entries into the frame to write; it runs on the writer thread.
    """

    def __init__(
        self,
        directory: Path,
        to_frame: Callable[[list[Any]], pl.DataFrame],
        *,
        prefix: str,
        sink: LogSink | None = None,
        flush_seconds: float = FLUSH_SECONDS,
        max_rows: int = MAX_BUFFER_ROWS,
        on_flush: Callable[[pl.DataFrame], None] | None = None,
    ) -> None:
        self.directory = directory
        self.prefix = prefix
        self.sink = sink or ParquetSink(directory, prefix)
        self.sink = sink or ParquetSink(directory, prefix)
        self.flush_seconds = flush_seconds
        self.max_rows = max_rows
        self._to_frame = to_frame
        self._on_flush = on_flush
        self._pending: list[tuple[Any, int, Future]] = []  # appended, not yet on disk
        self._frames: list[pl.DataFrame] = []  # journalled, not yet in a Parquet file
        self._lock = threading.Lock()  # guards _pending
        self._write_lock = threading.Lock()  # one writer at a time
        self._wake = threading.Event()
        self._closed = False
        self._token = f"{os.getpid()}{secrets.token_hex(3)}"
        self._seq = 0
        self._journal: Any = None  # the open segment (flock held while open)
        self.rows_written = 0
        self._thread: threading.Thread | None = None

    def start(self) -> BufferedLog:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.sink.open()
        recover_orphans(self.directory, self.sink)
        self._thread = threading.Thread(target=self._run, name=f"{self.prefix}-log", daemon=True)
        self._thread.start()
        atexit.register(self.close)
        return self

    def append(self, entry: Any, rows: int, *, journal: bool = True) -> Future:
        """Buffer one entry of ``rows`` rows; the future resolves once it is on disk.
        ``journal=False``: the caller makes it durable itself with :meth:`flush` (the stream
        consumer, once per batch), so the writer does not journal it first."""
        done: Future = Future()
        with self._lock:
            self._pending.append((entry, rows, done))
        if journal:
            self._wake.set()
        return done

    @property
    def pending_rows(self) -> int:
        with self._lock:
            return sum(n for _, n, _ in self._pending) + sum(f.height for f in self._frames)

    def _take(self) -> list[tuple[Any, int, Future]]:
        with self._lock:
            taken, self._pending = self._pending, []
        return taken

    def _give_back(self, taken: list[tuple[Any, int, Future]], exc: BaseException) -> None:
        """Keep failed rows for the next try; tell their writers this write failed."""
        with self._lock:
            self._pending[:0] = [(e, n, Future()) for e, n, _ in taken]
        for _, _, done in taken:
            if not done.done():
                done.set_exception(exc)

    def commit(self) -> int:
        """Journal everything appended so far (one record, one fsync); return its rows."""
        with self._write_lock:
            taken = self._take()
            if not taken:
                return 0
            try:
                frame = self._to_frame([e for e, _, _ in taken])
                self._append_record(_ipc(frame))
            except BaseException as exc:
                self._give_back(taken, exc)
                raise
            self._frames.append(frame)
        for _, _, done in taken:
            if not done.done():
                done.set_result(None)
        return frame.height

    def _append_record(self, payload: bytes) -> None:
        if self._journal is None:
            self._seq += 1
            name = f"{self.prefix}~{self._token}-{self._seq:06d}{JOURNAL_SUFFIX}"
            self._journal = open(self.directory / name, "ab", buffering=0)  # noqa: SIM115
            fcntl.flock(self._journal, fcntl.LOCK_EX)  # held until the segment is dropped
            _fsync_dir(self.directory)
        fd = self._journal.fileno()
        start = os.lseek(fd, 0, os.SEEK_END)
        record = memoryview(_HEADER.pack(len(payload), zlib.crc32(payload)) + payload)
        try:
            while record:
                record = record[os.write(fd, record) :]
            os.fsync(fd)
        except BaseException:
            with contextlib.suppress(OSError):  # no torn record ahead of the next one
                os.ftruncate(fd, start)
            raise

    def flush(self) -> Path | str | None:
        """Write everything buffered or journalled to the sink as one batch now (None if
        empty); return where."""
        with self._write_lock:
            taken = self._take()
            try:
                fresh = [self._to_frame([e for e, _, _ in taken])] if taken else []
            except BaseException as exc:
                self._give_back(taken, exc)
                raise
            frames = self._frames + fresh
            if not frames:
                return None
            frame = pl.concat(frames, how="vertical_relaxed")
            segment = f"{self._token}-{self._seq if self._journal else self._seq + 1:06d}"
            try:
                path = self.sink.write(frame, segment)
            except BaseException as exc:
                self._frames = frames  # journalled or not, kept for the next try
                for _, _, done in taken:
                    done.set_exception(exc)
                raise
            self._frames = []
            self._end_segment()
            self.rows_written += frame.height
        for _, _, done in taken:
            done.set_result(None)
        if self._on_flush is not None:
            try:
                self._on_flush(frame)
            except Exception:  # metrics must never cost a record
                log.exception("%s-log flush hook failed", self.prefix)
        return path

    def _end_segment(self) -> None:
        """The journal's rows are in a Parquet file now: drop the segment."""
        if self._journal is None:
            self._seq += 1  # the Parquet file took this segment number
            return
        journal, self._journal = self._journal, None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(journal.name)
        journal.close()

    def _run(self) -> None:
        last = time.monotonic()
        while not self._closed:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            try:
                self.commit()
                due = time.monotonic() - last >= self.flush_seconds
                if due or sum(f.height for f in self._frames) >= self.max_rows:
                    self.flush()
                    last = time.monotonic()
            except Exception:
                log.exception("%s-log write failed; rows kept for the next try", self.prefix)
                time.sleep(min(self.flush_seconds, 1.0))

    def close(self) -> None:
        """Stop the thread and flush what is left (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        try:
            self.flush()
        finally:
            self.sink.close()
        atexit.unregister(self.close)
