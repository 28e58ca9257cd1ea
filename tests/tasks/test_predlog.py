"""The prediction/feedback log: one whole Parquet file per flush, nothing lost, joinable."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import orjson
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tasks.buffered_log import BufferedLog, ParquetSink
from tasks.io import to_jsonable
from tasks.journal import Segment, ipc
from tasks.predlog import (
    ScoredBatch,
    decode_batch,
    decode_batches,
    encode_batch,
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
    """A prediction log journalling as the service's does."""
    return BufferedLog(
        settings.predictions_dir, prediction_frame, prefix="predictions",
        encode=encode_batch, decode=decode_batches, **kw,
    )  # fmt: skip


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


def test_a_scored_batch_survives_its_journal_record():
    """encode_batch -> decode_batch gives the same log rows: NaN and missing values, shadow
    scores, multiclass columns, microsecond UTC times."""
    plain = replace(_batch(["r1", "r2"], ["c1", "c2"], T0 + timedelta(microseconds=7)),
                    scores=np.array([0.25, np.nan]), shadow_tag="m:2",
                    shadow_scores=np.array([0.5, 1 / 3]), arm="challenger")  # fmt: skip
    bare = replace(_batch(["r3"], ["c3"], T0), entity_ids=None, decisions=None)
    multi = replace(bare, class_columns={"predicted_class": ["x"], "proba_x": np.array([0.9])})
    for batch in (plain, bare, multi):
        assert_frame_equal(prediction_frame(decode_batch(encode_batch(batch))),
                           prediction_frame(batch))  # fmt: skip
    assert_frame_equal(decode_batches([encode_batch(plain), encode_batch(bare)]),
                       prediction_frame([plain, bare]))  # fmt: skip


def test_inputs_go_as_json_rows_only_when_json_holds_them_exactly():
    """A few rows of plain types travel as JSON rows (``DLB2``): edge values come back bit for
    bit. NaN or inf, other types (times) or many rows travel as Arrow IPC (``DLB1``)."""
    edge = pl.DataFrame(
        {"i": [2**63 - 1, -(2**63), None], "u": [0, 2**32 - 1, None],
         "f": [0.1, -0.0, 5e-324], "f32": [0.1, None, 3.4e38], "s": ["é\u2028x", "", None],
         "b": [True, None, False]},
        schema={"i": pl.Int64, "u": pl.UInt32, "f": pl.Float64, "f32": pl.Float32,
                "s": pl.String, "b": pl.Boolean},
    )  # fmt: skip
    ipc_only = {
        "a NaN": edge.with_columns(pl.Series("f", [0.1, float("nan"), None])),
        "an inf": edge.with_columns(pl.Series("f32", [float("-inf"), 0.0, 1.0], pl.Float32)),
        "a time column": edge.with_columns(ts=pl.lit(T0)),
        "many rows": pl.concat([edge] * 6),
    }
    cases = [(edge, b"DLB2"), *((frame, b"DLB1") for frame in ipc_only.values())]
    for inputs, tag in cases:
        n = inputs.height
        batch = replace(_batch([f"r{i}" for i in range(n)], [f"c{i}" for i in range(n)], T0),
                        inputs=inputs)  # fmt: skip
        record = encode_batch(batch)
        assert record[:4] == tag
        back = decode_batch(record)
        assert_frame_equal(back.inputs, inputs)
        assert back.inputs["f"].cast(pl.Float64).to_numpy().tobytes() == (
            inputs["f"].cast(pl.Float64).to_numpy().tobytes()
        )  # -0.0 and the subnormal exactly
        assert_frame_equal(prediction_frame(back), prediction_frame(batch))


def _old_record(batch: ScoredBatch) -> bytes:
    """A prediction-log record as written before the JSON-rows format: ``DLB1``, the fields as
    JSON, the inputs as Arrow IPC."""
    head = {f: getattr(batch, f) for f in ("request_ids", "entity_ids", "ts", "model_tag",
            "scores", "decisions", "latency_ms", "shadow_tag", "shadow_scores", "arm",
            "class_columns")}  # fmt: skip
    text = orjson.dumps(head, default=to_jsonable, option=orjson.OPT_SERIALIZE_NUMPY)
    return b"DLB1" + struct.pack("<I", len(text)) + text + ipc(batch.inputs)


def test_dead_journals_of_both_record_formats_are_read(home_settings: Settings):
    """A journal written before issue #11 (one Arrow IPC frame per commit) and one of scored
    batches (both record formats of them) are recovered by the readers."""
    folder = home_settings.predictions_dir
    folder.mkdir(parents=True)
    old = Segment(folder / "predictions~dead1-000001.journal", sync=False)
    old.append([ipc(prediction_frame([_batch(["a", "b"], ["c1", "c2"], T0)]))])
    new = Segment(folder / "predictions~dead2-000001.journal", sync=False)
    new.append([encode_batch(_batch([i], ["c3"], T0)) for i in ("c", "d")])
    new.append([_old_record(_batch(["e"], ["c4"], T0))])  # a scored batch as IPC (DLB1)
    for segment in (old, new):
        segment.close()  # the writers died
    got = load_predictions(settings=home_settings)
    assert sorted(got["request_id"]) == ["a", "b", "c", "d", "e"]
    validate_predictions(got)
    assert not list(folder.glob("*.journal"))


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


class _FailingOnce(ParquetSink):
    """A Parquet sink whose first batch write fails (a full disk, then room again)."""

    failed = False

    def write(self, frame: pl.DataFrame, segment: str) -> Path:
        if not self.failed:
            self.failed = True
            raise OSError(28, "No space left on device")
        return super().write(frame, segment)


def test_a_failed_write_keeps_the_rows_for_the_next_flush(home_settings: Settings):
    settings = home_settings
    sink = _FailingOnce(settings.predictions_dir, "p")
    log = _log(settings, sink=sink, flush_seconds=3600).start()
    log.append(_batch(["a"], ["c1"], T0), 1).result(timeout=10)
    with pytest.raises(OSError):
        log.flush()
    assert log.pending_rows == 1
    log.append(_batch(["b"], ["c2"], T0), 1)
    log.close()
    assert sorted(load_predictions(settings=settings)["request_id"]) == ["a", "b"]
    assert not list(settings.predictions_dir.glob("*.journal"))


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
        from tasks.buffered_log import BufferedLog
        from tasks.predlog import ScoredBatch, decode_batches, encode_batch, prediction_frame
        log = BufferedLog(Path({str(home / "p")!r}), prediction_frame, prefix="p",
                          encode=encode_batch, decode=decode_batches, flush_seconds=0.01).start()
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
    fb = BufferedLog(settings.feedback_dir, pl.concat, prefix="feedback").start()
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
