"""The prediction and feedback logs: buffered in memory, flushed one batch at a time to a sink.

Writers append cheap in-memory entries on the request path; a background thread turns them
into a frame and hands it to the log's sink. Two sinks: :class:`ParquetSink` (the embedded
default: one file per batch, temp file + fsync + rename + fsync of the directory, so a crash
leaves whole files only; an appended-to Parquet file loses everything on a kill: see PITFALLS)
and ``tasks.postgres.log.PostgresSink`` (one COPY transaction per batch, for several hosts;
chosen by ``Settings.database_url``). ``close()`` flushes what is left: a clean stop loses
nothing. A failed write keeps its rows in the buffer and retries on the next flush.

Readers, whichever sink holds the rows: :func:`load_predictions`, :func:`load_feedback` and
:func:`join_feedback` (labels joined to predictions by ``request_id``, else by ``entity_id``).
"""

from __future__ import annotations

import atexit
import io
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import polars as pl

from schemas.records import PREDICTION_COLUMNS, TS, FeedbackRecord, PredictionRecord
from tasks.settings import Settings, get_settings

log = logging.getLogger(__name__)

FLUSH_SECONDS = 2.0  # how stale the log on disk may be while serving
MAX_BUFFER_ROWS = 50_000  # flush early past this many buffered rows

PREDICTION_TYPES: dict[str, pl.DataType] = {
    "request_id": pl.String,
    "entity_id": pl.String,
    "ts": TS,
    "model_tag": pl.String,
    "score": pl.Float64,
    "decision": pl.Boolean,
    "shadow_tag": pl.String,
    "shadow_score": pl.Float64,
    "latency_ms": pl.Float64,
    "arm": pl.String,
}
FEEDBACK_TYPES: dict[str, pl.DataType] = {
    "request_id": pl.String,
    "entity_id": pl.String,
    "label": pl.Float64,
    "ts": TS,
}
assert list(PREDICTION_TYPES) == PREDICTION_COLUMNS
assert list(FEEDBACK_TYPES) == list(FeedbackRecord.to_schema().columns)


@dataclass(frozen=True)
class ScoredBatch:
    """One request's worth of log rows, kept as the request produced them (no copies)."""

    inputs: pl.DataFrame
    request_ids: Sequence[str]
    entity_ids: Sequence[str | None] | None
    ts: datetime
    model_tag: str
    scores: np.ndarray
    decisions: np.ndarray | None
    latency_ms: float
    shadow_tag: str | None = None
    shadow_scores: np.ndarray | None = None
    arm: str = "champion"  # the rollout arm routed to (``model_tag`` says who answered)

    def __len__(self) -> int:
        return len(self.request_ids)


def prediction_frame(batch: ScoredBatch | Sequence[ScoredBatch]) -> pl.DataFrame:
    """Scored batches as prediction-log rows: the record columns, then the inputs.

    Built column-wise for many batches at once: a flush of thousands of one-row requests
    costs one frame construction, not thousands.
    """
    batches = [batch] if isinstance(batch, ScoredBatch) else list(batch)
    counts = np.array([len(b) for b in batches])
    per_row = np.repeat(np.arange(len(batches)), counts)

    def scalar(values: list, dtype: pl.DataType) -> pl.Series:
        return pl.Series(values, dtype=dtype).gather(per_row)

    def column(parts: list, dtype: pl.DataType) -> pl.Series:
        return pl.Series(list(chain.from_iterable(parts)), dtype=dtype)

    def array(parts: list, n: list[int]) -> pl.Series:
        filled = [np.full(k, np.nan) if p is None else np.asarray(p, np.float64)
                  for p, k in zip(parts, n, strict=True)]  # fmt: skip
        values = np.concatenate(filled) if filled else np.array([], np.float64)
        return pl.Series(values).fill_nan(None)

    n = counts.tolist()
    decisions = [
        [None] * k if b.decisions is None else b.decisions.tolist()
        for b, k in zip(batches, n, strict=True)
    ]
    head = pl.DataFrame(
        {
            "request_id": column([b.request_ids for b in batches], pl.String),
            "entity_id": column(
                [
                    b.entity_ids if b.entity_ids is not None else [None] * k
                    for b, k in zip(batches, n, strict=True)
                ],
                pl.String,
            ),  # fmt: skip
            "ts": scalar([b.ts for b in batches], TS),
            "model_tag": scalar([b.model_tag for b in batches], pl.String),
            "score": array([b.scores for b in batches], n),
            "decision": column(decisions, pl.Boolean),
            "shadow_tag": scalar([b.shadow_tag for b in batches], pl.String),
            "shadow_score": array([b.shadow_scores for b in batches], n),
            "latency_ms": scalar([b.latency_ms for b in batches], pl.Float64),
            "arm": scalar([b.arm for b in batches], pl.String),
        },
        schema=PREDICTION_TYPES,
    )
    inputs = pl.concat([b.inputs for b in batches], how="vertical_relaxed")
    inputs = inputs.drop([c for c in PREDICTION_COLUMNS if c in inputs.columns])
    return pl.concat([head, inputs], how="horizontal")


def feedback_frame(
    request_ids: Sequence[str | None],
    entity_ids: Sequence[str | None],
    labels: Sequence[float],
    ts: Sequence[datetime | None],
) -> pl.DataFrame:
    """Feedback rows typed as :class:`FeedbackRecord` (a missing time is 'now')."""
    now = datetime.now(UTC)
    times = [_utc(t) if t is not None else now for t in ts]
    frame = pl.DataFrame(
        {"request_id": request_ids, "entity_id": entity_ids, "label": labels, "ts": times},
        schema=FEEDBACK_TYPES,
    )
    return FeedbackRecord.validate(frame)


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


class LogSink(Protocol):
    """Where a :class:`BufferedLog` writes: each ``write`` stores one batch whole or not at all."""

    def open(self) -> None: ...
    def write(self, frame: pl.DataFrame) -> Path | str: ...
    def close(self) -> None: ...


class ParquetSink:
    """One Parquet file per batch in ``directory`` (the embedded default); nothing held open."""

    def __init__(self, directory: Path, prefix: str) -> None:
        self.directory = directory
        self.prefix = prefix
        self._seq = 0

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)

    def write(self, frame: pl.DataFrame) -> Path:
        from tasks.io import atomic_write

        self._seq += 1
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = self.directory / f"{self.prefix}-{stamp}-{os.getpid()}-{self._seq:06d}.parquet"
        buf = io.BytesIO()
        frame.write_parquet(buf, compression="zstd", statistics=True)
        atomic_write(path, buf.getvalue())
        return path

    def close(self) -> None: ...


LogKind = Literal["predictions", "feedback"]


def log_sink(kind: LogKind, settings: Settings | None = None) -> LogSink:
    """The sink ``settings`` choose for a log: PostgreSQL when a database URL is set."""
    settings = settings or get_settings()
    if settings.database_url:
        from tasks.postgres.log import PostgresSink

        return PostgresSink(settings.database_url, kind)
    folder = settings.predictions_dir if kind == "predictions" else settings.feedback_dir
    return ParquetSink(folder, prefix=kind)


class BufferedLog:
    """Entries appended in memory, written by a background thread to a sink, a batch per flush.

    ``to_frame`` turns a list of entries into the frame to write; it runs on the flush thread,
    so expensive work (shadow scoring, building columns) stays off the request path.
    """

    def __init__(
        self,
        sink: LogSink,
        to_frame: Callable[[list[Any]], pl.DataFrame],
        *,
        flush_seconds: float = FLUSH_SECONDS,
        max_rows: int = MAX_BUFFER_ROWS,
        on_flush: Callable[[pl.DataFrame], None] | None = None,
    ) -> None:
        self.sink = sink
        self.flush_seconds = flush_seconds
        self.max_rows = max_rows
        self._to_frame = to_frame
        self._on_flush = on_flush
        self._entries: list[Any] = []
        self._rows = 0
        self._lock = threading.Lock()  # guards the buffer
        self._write_lock = threading.Lock()  # one writer at a time
        self._wake = threading.Event()
        self._closed = False
        self.rows_written = 0
        self._thread: threading.Thread | None = None

    def start(self) -> BufferedLog:
        self.sink.open()
        self._thread = threading.Thread(target=self._run, name="buffered-log", daemon=True)
        self._thread.start()
        atexit.register(self.close)
        return self

    def append(self, entry: Any, rows: int) -> None:
        """Buffer one entry of ``rows`` rows (O(1); never touches the disk)."""
        with self._lock:
            self._entries.append((entry, rows))
            self._rows += rows
            full = self._rows >= self.max_rows
        if full:
            self._wake.set()

    @property
    def pending_rows(self) -> int:
        return self._rows

    def flush(self) -> Path | str | None:
        """Write everything buffered as one batch now; return where (None if empty)."""
        with self._write_lock:
            with self._lock:
                entries, self._entries, self._rows = self._entries, [], 0
            if not entries:
                return None
            try:
                frame = self._to_frame([e for e, _ in entries])
                path = self.sink.write(frame)
            except Exception:
                with self._lock:  # keep the rows: retried on the next flush
                    self._entries[:0] = entries
                    self._rows += sum(n for _, n in entries)
                raise
            self.rows_written += frame.height
        if self._on_flush is not None:
            try:
                self._on_flush(frame)
            except Exception:  # metrics must never cost a record
                log.exception("prediction-log flush hook failed")
        return path

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            try:
                self.flush()
            except Exception:
                log.exception("prediction-log flush failed; rows kept for the next try")
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


# --- readers ------------------------------------------------------------------------------


def log_files(directory: Path) -> list[Path]:
    """The whole batch files of a Parquet log, oldest name first (temp files skipped)."""
    return sorted(p for p in directory.glob("*.parquet") if not p.name.startswith("."))


def _read(files: list[Path], types: dict[str, pl.DataType]) -> pl.DataFrame:
    if not files:
        return pl.DataFrame(schema=types)
    try:
        return pl.read_parquet(files)
    except (pl.exceptions.SchemaError, pl.exceptions.ComputeError, pl.exceptions.ShapeError):
        # files written under different contracts: align columns, missing ones as null
        return pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed")


def _as_ts(value: datetime | str | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return _utc(value) if value is not None else None
    return _utc(datetime.fromisoformat(value))


def load_predictions(
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    settings: Settings | None = None,
) -> pl.DataFrame:
    """Every logged prediction with ``since <= ts < until`` (UTC), oldest first."""
    settings = settings or get_settings()
    lo, hi = _as_ts(since), _as_ts(until)
    if settings.database_url:
        from tasks.postgres.log import read_log

        return read_log(settings.database_url, "predictions", lo, hi)
    frame = _read(log_files(settings.predictions_dir), PREDICTION_TYPES)
    if lo is not None:
        frame = frame.filter(pl.col("ts") >= lo)
    if hi is not None:
        frame = frame.filter(pl.col("ts") < hi)
    return frame.sort("ts", maintain_order=True)


def load_feedback(settings: Settings | None = None) -> pl.DataFrame:
    """Every feedback label received, oldest first."""
    settings = settings or get_settings()
    if settings.database_url:
        from tasks.postgres.log import read_log

        return read_log(settings.database_url, "feedback")
    return _read(log_files(settings.feedback_dir), FEEDBACK_TYPES).sort("ts", maintain_order=True)


def join_feedback(
    predictions: pl.DataFrame | None = None,
    feedback: pl.DataFrame | None = None,
    settings: Settings | None = None,
) -> pl.DataFrame:
    """Predictions that have a label, with ``label`` and ``label_ts`` columns.

    A label sent with a ``request_id`` belongs to that prediction. A label sent with only an
    ``entity_id`` belongs to every prediction of that entity made at or before the label's
    time. When several labels match, the latest wins.
    """
    preds = predictions if predictions is not None else load_predictions(settings=settings)
    fb = feedback if feedback is not None else load_feedback(settings=settings)
    fb = fb.sort("ts").rename({"ts": "label_ts"})
    by_request = (
        fb.filter(pl.col("request_id").is_not_null())
        .unique("request_id", keep="last")
        .select("request_id", pl.col("label").alias("_l1"), pl.col("label_ts").alias("_t1"))
    )
    by_entity = (
        preds.select("request_id", "entity_id", "ts")
        .join(
            fb.filter(pl.col("request_id").is_null()).select("entity_id", "label", "label_ts"),
            on="entity_id",
        )
        .filter(pl.col("label_ts") >= pl.col("ts"))
        .sort("label_ts")
        .unique("request_id", keep="last")
        .select("request_id", pl.col("label").alias("_l2"), pl.col("label_ts").alias("_t2"))
    )
    return (
        preds.join(by_request, on="request_id", how="left")
        .join(by_entity, on="request_id", how="left")
        .with_columns(
            label=pl.coalesce("_l1", "_l2"),
            label_ts=pl.coalesce("_t1", "_t2"),
        )
        .drop("_l1", "_l2", "_t1", "_t2")
        .filter(pl.col("label").is_not_null())
    )


def validate_predictions(frame: pl.DataFrame) -> pl.DataFrame:
    """Check a prediction-log frame against :class:`PredictionRecord`."""
    return PredictionRecord.validate(frame)
