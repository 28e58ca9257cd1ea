"""The monitor's inputs: the window of the prediction log, its labels, and the champion.

The window comes from the prediction log (``schemas.records.PredictionRecord`` columns followed
by the dataset's input columns); labels from the feedback log.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from schemas.base import DatasetSpec
from tasks.settings import Settings, get_settings


@dataclass(frozen=True)
class Window:
    since: datetime
    until: datetime

    @property
    def minutes(self) -> float:
        return (self.until - self.since).total_seconds() / 60


@dataclass(frozen=True)
class Champion:
    """What the monitor needs of the champion: tag, test metrics, importance, threshold."""

    name: str
    tag: str
    metrics: dict[str, Any]
    importance: dict[str, float] | None
    threshold: float
    last_retrain_at: datetime | None
    classes: tuple[str, ...] = ()  # a multiclass champion's classes, in probability order
    task: str = "binary"


def window_bounds(minutes: float, until: datetime | None = None) -> Window:
    """The window ``[until - minutes, until)``; ``until`` defaults to now (UTC)."""
    until = (until or datetime.now(UTC)).astimezone(UTC)
    return Window(until - timedelta(minutes=minutes), until)


def load_champion(name: str, settings: Settings | None = None) -> Champion:
    """The champion's tag, test metrics, feature importance (None if not stored) and threshold."""
    from tasks.registry import model_metadata, read_index, resolve

    tag = resolve(f"{name}:champion", settings)
    meta = model_metadata(tag, settings)
    metrics = meta.get("metrics") or {}
    metrics = metrics.get("test", metrics) if isinstance(metrics, dict) else {}
    history = read_index(settings).get(name, {}).get("history", [])
    changes = [h["time"] for h in history if h.get("alias") == "champion" and h.get("from")]
    last = datetime.fromisoformat(max(changes)) if changes else None
    threshold = float(meta.get("threshold") or 0.5)
    classes = tuple(str(c) for c in meta.get("classes") or ())
    task = str(meta.get("task") or "binary")
    return Champion(name, tag, metrics, _importance(meta), threshold, last, classes, task)


def _importance(meta: dict[str, Any]) -> dict[str, float] | None:
    raw = meta.get("feature_importance") or meta.get("importance")
    if isinstance(raw, dict) and isinstance(raw.get("gain"), dict):
        raw = raw["gain"]
    if isinstance(raw, list) and all(isinstance(r, list | tuple) and len(r) == 2 for r in raw):
        raw = dict(raw)
    if not isinstance(raw, dict):
        return None
    try:
        return {str(k): float(v) for k, v in raw.items()}
    except (TypeError, ValueError):
        return None


def load_window(
    window: Window, settings: Settings | None = None, categorical: Sequence[str] = ()
) -> pl.DataFrame:
    """Prediction-log rows with ``since <= ts < until``.

    A lazy scan with the time filter pushed down (row groups outside the window are skipped,
    nothing is sorted): on a 1M-row window it peaks at a third of the memory of reading the
    whole log. Files that disagree on their schema (a schema break) make the scan fail; then
    ``tasks.predlog.load_predictions`` aligns them column by column. A log on PostgreSQL is
    read there (the filter runs in the database). The ``categorical`` columns (the contract's)
    stored as text come back as ``pl.Categorical``: the same values in 4 bytes a row instead
    of a 16-byte string view (a 1M-row window with 8 such columns: ~90 MiB less).
    """
    from tasks.predlog import load_predictions, log_files

    settings = settings or get_settings()
    if settings.database_url:
        frame = load_predictions(window.since, window.until, settings=settings)
        return frame.with_columns(_as_categories(frame.schema, categorical))
    files = log_files(settings.predictions_dir)
    in_window = (pl.col("ts") >= window.since) & (pl.col("ts") < window.until)
    if files:
        try:
            scan = pl.scan_parquet(files).filter(in_window)
            return scan.with_columns(_as_categories(scan.collect_schema(), categorical)).collect()
        except pl.exceptions.PolarsError:
            pass
    frame = load_predictions(window.since, window.until, settings=settings)
    return frame.with_columns(_as_categories(frame.schema, categorical))


def _as_categories(schema: pl.Schema, columns: Sequence[str]) -> list[pl.Expr]:
    return [pl.col(c).cast(pl.Categorical) for c in columns if schema.get(c) == pl.String]


def load_labels(settings: Settings | None = None) -> pl.DataFrame:
    """Every feedback label received (``FeedbackRecord``)."""
    from tasks.predlog import load_feedback

    return load_feedback(settings=settings)


def answered_by(tag: str) -> pl.Expr:
    """True for the log rows the model ``tag`` answered (rows with no tag: logs written before
    tags were logged). The rule for every check that judges the champion's own outputs: during
    a canary the challenger's arm holds another model's scores, and after a promotion the
    window holds the previous champion's; those would read as prediction drift or skew its
    realized and estimated performance. Input drift and quality still see every row."""
    return pl.col("model_tag").is_null() | (pl.col("model_tag") == tag)


def champion_rows(frame: pl.DataFrame, tag: str) -> pl.DataFrame:
    """The rows of ``frame`` the model ``tag`` answered (``answered_by``)."""
    if "model_tag" not in frame.columns or not frame.height:
        return frame
    mine = answered_by(tag)
    if frame.select(mine.all()).item():  # the usual case: no copy of a window's rows
        return frame
    return frame.filter(mine)


def monitor_frames(
    window: pl.DataFrame, dataset: DatasetSpec, score_column: str, champion_tag: str | None = None
) -> pl.DataFrame:
    """The window's feature columns plus its score renamed as in the reference profile (with
    ``champion_tag``, the scores of rows another model answered are null: prediction drift
    sees the champion's own)."""
    from tasks.predict import PROBA_PREFIX

    cols = [c for c in dataset.feature_columns if c in window.columns]
    per_class = [c for c in window.columns if c.startswith(PROBA_PREFIX)]  # multiclass
    named = [(c, score_column if c == "score" else c) for c in ("score", *per_class)
             if c in window.columns]  # fmt: skip
    mine = answered_by(champion_tag) if champion_tag and "model_tag" in window.columns else None
    outputs = [(pl.col(c) if mine is None else pl.when(mine).then(pl.col(c))).alias(name)
               for c, name in named]  # fmt: skip
    return window.select([*cols, *outputs])


@dataclass(frozen=True)
class WindowProfile:
    """The window as the reference profile sees it, its whylogs profile and where it is."""

    frame: pl.DataFrame
    view: Any
    path: Path


def profile_window(
    window: pl.DataFrame,
    dataset: DatasetSpec,
    now: datetime,
    settings: Settings | None = None,
    champion_tag: str | None = None,
) -> WindowProfile:
    """Profile the window's features and score (whylogs; the score only where ``champion_tag``
    answered, when given) and write it as ``<run stamp of now>.bin``."""
    from tasks.profiling import SCORE_COLUMN, profile_frame, write_profile

    frame = monitor_frames(window, dataset, score_column=SCORE_COLUMN, champion_tag=champion_tag)
    view = profile_frame(frame=frame)
    folder = (settings or get_settings()).window_profiles_dir
    path = folder / f"{run_stamp(now)}.bin"
    return WindowProfile(frame, view, write_profile(view, path))


def run_stamp(now: datetime) -> str:
    """A file-safe, sortable UTC time stamp for this run's report and profile files."""
    return now.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
