"""The prediction/feedback log: one whole Parquet file per flush, nothing lost, joinable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tasks.predlog import (
    BufferedLog,
    ParquetSink,
    ScoredBatch,
    feedback_frame,
    join_feedback,
    load_feedback,
    load_predictions,
    prediction_frame,
    validate_predictions,
)
from tasks.settings import Settings

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _batch(ids: list[str], entities: list[str], ts: datetime, tag: str = "m:1") -> ScoredBatch:
    n = len(ids)
    return ScoredBatch(
        inputs=pl.DataFrame({"customerID": entities, "tenure": list(range(n))}),
        request_ids=ids,
        entity_ids=entities,
        ts=ts,
        model_tag=tag,
        scores=np.linspace(0.1, 0.9, n),
        decisions=np.linspace(0.1, 0.9, n) >= 0.5,
        latency_ms=1.5,
    )


def _log(settings: Settings, **kw) -> BufferedLog:
    return BufferedLog(ParquetSink(settings.predictions_dir, "predictions"), prediction_frame, **kw)


def test_prediction_frame_follows_the_record_contract():
    frame = prediction_frame(_batch(["r1", "r2"], ["c1", "c2"], T0))
    validate_predictions(frame)
    assert frame.columns[:10] == [
        "request_id", "entity_id", "ts", "model_tag", "score", "decision",
        "shadow_tag", "shadow_score", "latency_ms", "arm",
    ]  # fmt: skip
    assert frame.columns[10:] == ["customerID", "tenure"]
    assert frame["shadow_score"].null_count() == 2
    assert frame["arm"].to_list() == ["champion", "champion"]  # no rollout: the champion's


def test_one_file_per_flush_and_close_flushes_the_rest(home_settings: Settings):
    settings = home_settings
    log = _log(settings, flush_seconds=3600).start()
    log.append(_batch(["a", "b"], ["c1", "c2"], T0), 2)
    first = log.flush()
    log.append(_batch(["c"], ["c3"], T0), 1)
    log.close()  # the clean stop
    files = sorted(settings.predictions_dir.glob("*.parquet"))
    assert len(files) == 2 and first in files
    assert not [p for p in settings.predictions_dir.iterdir() if p.name.startswith(".")]
    assert load_predictions(settings=settings)["request_id"].to_list() == ["a", "b", "c"]
    assert log.flush() is None  # nothing pending, no empty file


def test_a_failed_write_keeps_the_rows_for_the_next_flush(home_settings: Settings):
    settings = home_settings
    calls = {"n": 0}

    def flaky(entries):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("disk full")
        return prediction_frame(entries)

    log = BufferedLog(ParquetSink(settings.predictions_dir, "p"), flaky, flush_seconds=3600).start()
    log.append(_batch(["a"], ["c1"], T0), 1)
    with pytest.raises(OSError):
        log.flush()
    assert log.pending_rows == 1
    log.append(_batch(["b"], ["c2"], T0), 1)
    log.close()
    assert sorted(load_predictions(settings=settings)["request_id"]) == ["a", "b"]


def test_background_thread_flushes_without_being_asked(home_settings: Settings):
    settings = home_settings
    log = _log(settings, flush_seconds=0.05).start()
    log.append(_batch(["a"], ["c1"], T0), 1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and log.rows_written == 0:
        time.sleep(0.02)
    assert load_predictions(settings=settings).height == 1
    log.close()


def test_killed_writer_leaves_only_whole_files(home: Path):
    """SIGKILL mid-stream: every file on disk reads back whole (temp + fsync + rename)."""
    script = textwrap.dedent(
        f"""
        import itertools, time, numpy as np, polars as pl
        from datetime import UTC, datetime
        from pathlib import Path
        from tasks.predlog import BufferedLog, ParquetSink, ScoredBatch, prediction_frame
        log = BufferedLog(ParquetSink(Path({str(home / "p")!r}), "p"), prediction_frame,
                          flush_seconds=0.01).start()
        for i in itertools.count():
            time.sleep(0.0005)
            n = 50
            log.append(ScoredBatch(pl.DataFrame({{"x": np.arange(n)}}),
                       [f"{{i}}-{{j}}" for j in range(n)], None, datetime.now(UTC), "m",
                       np.zeros(n), None, 0.1), n)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).parents[2])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(list((home / "p").glob("*.parquet"))) < 5:
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    files = list((home / "p").glob("*.parquet"))
    assert len(files) >= 5
    frame = pl.read_parquet(files)  # raises if any file were partial
    assert frame["request_id"].n_unique() == frame.height


def test_load_predictions_filters_by_time(home_settings: Settings):
    settings = home_settings
    log = _log(settings, flush_seconds=3600).start()
    for i in range(3):
        log.append(_batch([f"r{i}"], [f"c{i}"], T0 + timedelta(hours=i)), 1)
    log.close()
    got = load_predictions(since=T0 + timedelta(hours=1), until="2026-01-01T02:00:00+00:00",
                           settings=settings)  # fmt: skip
    assert got["request_id"].to_list() == ["r1"]
    assert load_predictions(settings=Settings(home=settings.root / "empty")).height == 0


def test_feedback_joins_by_request_id_or_entity(home_settings: Settings):
    settings = home_settings
    log = _log(settings, flush_seconds=3600).start()
    log.append(_batch(["r1", "r2"], ["c1", "c2"], T0), 2)
    log.append(_batch(["r3"], ["c2"], T0 + timedelta(days=2)), 1)
    log.close()
    fb = BufferedLog(ParquetSink(settings.feedback_dir, "feedback"), pl.concat).start()
    fb.append(
        feedback_frame(
            ["r1", None, "r1"],
            [None, "c2", None],
            [0.0, 1.0, 1.0],
            [T0 + timedelta(hours=1), T0 + timedelta(days=1), T0 + timedelta(hours=2)],
        ),
        3,
    )
    fb.close()
    feedback = load_feedback(settings=settings)
    assert feedback.height == 3
    joined = join_feedback(settings=settings).sort("request_id")
    # r1: latest label by request id; r2: entity label after it; r3 came after the label
    assert joined["request_id"].to_list() == ["r1", "r2"]
    assert joined["label"].to_list() == [1.0, 1.0]


def test_feedback_needs_a_key():
    with pytest.raises(Exception, match="has_a_key"):
        feedback_frame([None], [None], [1.0], [None])
