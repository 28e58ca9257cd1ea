"""A log of rows that is durable before it answers: a journal of records, then batches.

Writers append in-memory entries and get a future back; it resolves once the entry is a
record in the journal (:mod:`tasks.journal`): one record per entry, made by the log's
``encode`` (default: the entry's rows as an Arrow IPC frame; the prediction log encodes its
scored batches directly, ``tasks.predlog``), so no frame is built on the request path.

``fsync`` says how durable an acknowledged entry is (``Settings.predlog_durability``):

- False ("write"): the appending thread writes the record itself and its future is resolved
  when ``append`` returns. The bytes are the OS's once ``write`` returns, so a SIGKILL of the
  process loses nothing acknowledged; an OS crash or power cut can lose the rows still in the
  journal (at most ``flush_seconds`` of them).
- True ("fsync"): a committer thread takes everything appended since its last turn, writes it
  with one fsync (group commit), then resolves the futures: survives a power cut too.

Every ``flush_seconds`` (or past ``max_rows``) a flusher thread closes the journal segment,
builds the frame of its entries (``to_frame``, off the request path: for the prediction log
the challenger's shadow scores too), writes it to the sink as one batch named after the segment
and deletes the segment; appends go on into a new segment meanwhile. Sinks: :class:`ParquetSink`
(the embedded default: one Parquet file per batch, temp + fsync + rename, see
:func:`tasks.io.atomic_write`) and ``tasks.postgres.log.PostgresSink`` (one COPY transaction
per batch, for several hosts). The journal is always local: on PostgreSQL a crash between the
COPY's commit and the journal's delete can write a batch twice when the journal is recovered
(at least once, never lost).

A SIGKILL leaves whole Parquet files and journals whose acknowledged records are whole (a torn
tail was never acknowledged and is dropped). :func:`recover_orphans` turns a dead writer's
journal into a batch (named after the segment, so running it twice, or after a crash between
the sink write and the journal delete, writes nothing twice); a log recovers its directory
when it starts, and the readers of ``tasks.predlog`` before reading. A live writer holds an
``flock`` on its segment, so several workers share one directory safely. An entry whose
journal write failed is refused (its future fails) but kept: the next flush writes it.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import io
import logging
import os
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from tasks.io import atomic_write
from tasks.journal import SUFFIX, Decode, Segment, ipc, read_records, records_frame

log = logging.getLogger(__name__)

FLUSH_SECONDS = 2.0  # how long rows stay in the journal before they join a Parquet file
MAX_BUFFER_ROWS = 50_000  # write the Parquet file early past this many journalled rows
JOURNAL_SUFFIX = SUFFIX
_Pending = tuple[Any, int, Future]  # entry, rows, its future
_JOURNALLED: Future = Future()  # what append returns for an entry journalled as appended
_JOURNALLED.set_result(None)


def read_journal(path: Path, decode: Decode | None = None) -> list[pl.DataFrame]:
    """The rows of each whole record of a journal segment, in order (torn tail dropped)."""
    return [f for p in read_records(path) if (f := records_frame([p], decode)) is not None]


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


def recover_orphans(
    directory: Path, sink: LogSink | None = None, decode: Decode | None = None
) -> int:
    """Write every journal no live writer holds to ``sink`` (default: Parquet files beside it);
    return the rows recovered. ``decode`` reads the records of a log with its own codec."""
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
                frame = records_frame(read_records(journal), decode)
                if frame is not None and frame.height:
                    target.write(frame, segment)
                    rows += frame.height
            journal.unlink()
    if rows:
        log.warning("recovered %d journalled rows in %s", rows, directory)
    return rows


@dataclass
class _Batch:
    """Entries on their way to the sink as one batch, named like their journal segment."""

    name: str
    segment: Segment | None = None  # None: entries that were never journalled
    entries: list[Any] = field(default_factory=list)
    rows: int = 0
    waiting: list[Future] = field(default_factory=list)  # resolved by the sink write

    def add(self, taken: list[_Pending], *, wait: bool) -> None:
        self.entries += [e for e, _, _ in taken]
        self.rows += sum(n for _, n, _ in taken)
        self.waiting += [d for _, _, d in taken if wait and not d.done()]


class BufferedLog:
    """Entries appended in memory, journalled before their future resolves, a batch a flush.

    ``to_frame`` turns a list of entries into the frame to write (at flush, on the flusher
    thread). ``encode`` turns one entry into a journal record's bytes and ``decode`` a
    segment's records back into rows (for recovery); default: ``to_frame([entry])`` as IPC.
    """

    def __init__(
        self,
        directory: Path,
        to_frame: Callable[[list[Any]], pl.DataFrame],
        *,
        prefix: str,
        sink: LogSink | None = None,
        encode: Callable[[Any], bytes] | None = None,
        decode: Decode | None = None,
        fsync: bool = False,
        flush_seconds: float = FLUSH_SECONDS,
        max_rows: int = MAX_BUFFER_ROWS,
        on_flush: Callable[[pl.DataFrame], None] | None = None,
    ) -> None:
        self.directory = directory
        self.prefix = prefix
        self.sink = sink or ParquetSink(directory, prefix)
        self.fsync = fsync
        self.flush_seconds = flush_seconds
        self.max_rows = max_rows
        self._to_frame = to_frame
        self._encode = encode or (lambda entry: ipc(to_frame([entry])))
        self._decode = decode
        self._on_flush = on_flush
        self._pending: list[_Pending] = []  # for the committer (fsync mode)
        self._unjournalled: list[_Pending] = []  # journal=False, or their journal write failed
        self._open: _Batch | None = None  # the segment being appended to
        self._batches: list[_Batch] = []  # closed segments, oldest first, not yet in the sink
        self._lock = threading.Lock()  # guards _pending and _unjournalled
        self._journal_lock = threading.Lock()  # guards _open, _batches, _seq
        self._flush_lock = threading.Lock()  # one flush at a time
        self._wake = threading.Event()  # the committer's
        self._flush_due = threading.Event()  # the flusher's
        self._closed = False
        self._token = f"{os.getpid()}{secrets.token_hex(3)}"
        self._seq = 0
        self.rows_written = 0
        self._threads: list[threading.Thread] = []

    def start(self) -> BufferedLog:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.sink.open()
        recover_orphans(self.directory, self.sink, self._decode)
        loops = [self._flusher] + ([self._committer] if self.fsync else [])
        for loop in loops:
            name = f"{self.prefix}-log-{loop.__name__.strip('_')}"
            self._threads.append(threading.Thread(target=loop, name=name, daemon=True))
            self._threads[-1].start()
        atexit.register(self.close)
        return self

    def append(self, entry: Any, rows: int, *, journal: bool = True) -> Future:
        """Buffer one entry of ``rows`` rows; the future resolves once it is journalled.
        ``journal=False``: the caller makes it durable itself with :meth:`flush` (the stream
        consumer, once per batch), so it is not journalled first."""
        if journal and not self.fsync:  # "write": journalled here and now, no thread hop
            try:
                self._write_records([(entry, rows, None)])
            except Exception as exc:  # noqa: BLE001 - the writer is told through its future
                failed: Future = Future()
                self._keep([(entry, rows, failed)], exc)
                return failed
            return _JOURNALLED  # one shared done future: no Future made per entry
        done: Future = Future()
        with self._lock:
            (self._pending if journal else self._unjournalled).append((entry, rows, done))
        if journal:
            self._wake.set()
        return done

    @property
    def pending_rows(self) -> int:
        with self._lock, self._journal_lock:
            batches = [*self._batches, *([self._open] if self._open else [])]
            waiting = [*self._pending, *self._unjournalled]
            return sum(n for _, n, _ in waiting) + sum(b.rows for b in batches)

    def commit(self) -> int:
        """Journal everything appended for the committer (one write, one fsync); its rows."""
        with self._lock:
            taken, self._pending = self._pending, []
        return self._journal(taken) if taken else 0

    def _journal(self, taken: list[_Pending]) -> int:
        """Append ``taken`` to the journal as one write and resolve their futures; on failure
        fail the futures and keep the entries for the next flush."""
        try:
            self._write_records(taken)
        except Exception as exc:  # noqa: BLE001 - the writers are told through their futures
            self._keep(taken, exc)
            return 0
        for _, _, done in taken:
            done.set_result(None)
        return sum(n for _, n, _ in taken)

    def _write_records(self, taken: list[tuple[Any, int, Future | None]]) -> None:
        """Encode ``taken`` and append it to the open segment as one write (or raise)."""
        payloads = [self._encode(e) for e, _, _ in taken]
        with self._journal_lock:
            batch = self._open or self._new_segment()
            try:
                batch.segment.append(payloads)
            finally:
                if batch.segment.broken:  # its tail is torn: the next append starts anew
                    self._rotate()
            batch.add(taken, wait=False)
        if batch.rows >= self.max_rows:
            self._flush_due.set()

    def _keep(self, taken: list[_Pending], exc: Exception) -> None:
        """Entries whose journal write failed: fail their futures, keep them for the flush."""
        with self._lock:
            self._unjournalled += [(e, n, Future()) for e, n, _ in taken]
        for _, _, done in taken:
            done.set_exception(exc)

    def _new_segment(self) -> _Batch:
        name = self._next_name()
        path = self.directory / f"{self.prefix}~{name}{JOURNAL_SUFFIX}"
        self._open = _Batch(name, Segment(path, sync=self.fsync))
        return self._open

    def _next_name(self) -> str:
        self._seq += 1
        return f"{self._token}-{self._seq:06d}"

    def _rotate(self) -> None:
        """Close the open segment for appends; it waits for the sink as the newest batch."""
        if self._open is not None:
            self._batches.append(self._open)
            self._open = None

    def flush(self) -> Path | str | None:
        """Write everything journalled or buffered to the sink now, a batch per journal
        segment (usually one); return where the last went (None if nothing)."""
        with self._flush_lock:
            with self._lock:
                taken, self._unjournalled = self._unjournalled, []
            with self._journal_lock:
                self._rotate()
                if taken:
                    if not self._batches:
                        self._batches.append(_Batch(self._next_name()))
                    self._batches[-1].add(taken, wait=True)
            where = None
            while self._batches:  # only this flush takes batches off (under the flush lock)
                where = self._write(self._batches[0])
                with self._journal_lock:
                    self._batches.pop(0)
            return where

    def _write(self, batch: _Batch) -> Path | str:
        try:
            frame = self._to_frame(batch.entries)
            where = self.sink.write(frame, batch.name)
        except BaseException as exc:  # kept for the next try; its waiting writers are told
            for done in batch.waiting:
                done.set_exception(exc)
            batch.waiting = []
            raise
        if batch.segment is not None:
            batch.segment.drop()
        self.rows_written += frame.height
        for done in batch.waiting:
            done.set_result(None)
        if self._on_flush is not None:
            try:
                self._on_flush(frame)
            except Exception:  # metrics must never cost a record
                log.exception("%s-log flush hook failed", self.prefix)
        return where

    def _committer(self) -> None:
        while not self._closed:
            self._wake.wait()
            self._wake.clear()
            self.commit()

    def _flusher(self) -> None:
        while not self._closed:
            self._flush_due.wait(self.flush_seconds)
            self._flush_due.clear()
            if self._closed:
                return
            try:
                self.flush()
            except Exception:
                log.exception("%s-log write failed; rows kept for the next try", self.prefix)

    def close(self) -> None:
        """Stop the threads and flush what is left (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        self._flush_due.set()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=30)
        try:
            self.commit()  # appended for the committer after its last turn
            self.flush()
        finally:
            self.sink.close()
        atexit.unregister(self.close)
