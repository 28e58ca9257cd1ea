"""The prediction/feedback log on PostgreSQL: same rows, same reader as the Parquet files.

Each test gets its own database on the machine's PostgreSQL, dropped in ``finally``.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tasks.buffered_log import BufferedLog
from tasks.monitoring.window import Window, load_window
from tasks.postgres import db
from tasks.postgres.log import PostgresSink, pg_type, read_log, table_columns
from tasks.predlog import (
    FEEDBACK_TYPES,
    PREDICTION_TYPES,
    ScoredBatch,
    feedback_frame,
    join_feedback,
    load_feedback,
    load_predictions,
    log_sink,
    prediction_frame,
)
from tasks.settings import Settings

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _batch(ids: list[str], ts: datetime, *, tag: str = "m:1", shadow: bool = False) -> ScoredBatch:
    n = len(ids)
    return ScoredBatch(
        inputs=pl.DataFrame(
            {
                "customerID": [f"c-{i}" for i in ids],
                "tenure": list(range(n)),
                "MonthlyCharges": np.linspace(20.0, 99.5, n),
                "TotalCharges": [None if k == 0 else 10.0 * k for k in range(n)],
                "Contract": ["One year", "", 'say "x", y'][:n] + ["Two year"] * max(0, n - 3),
            }
        ),
        request_ids=ids,
        entity_ids=[f"c-{i}" for i in ids],
        ts=ts,
        model_tag=tag,
        scores=np.linspace(0.1, 0.9, n),
        decisions=np.linspace(0.1, 0.9, n) >= 0.5,
        latency_ms=1.25,
        shadow_tag="m:2" if shadow else None,
        shadow_scores=np.linspace(0.2, 0.8, n) if shadow else None,
    )


def _write_both(settings_pg: Settings, settings_files: Settings, batches: list[ScoredBatch]):
    for settings in (settings_pg, settings_files):
        log = BufferedLog(
            settings.predictions_dir,
            prediction_frame,
            prefix="predictions",
            sink=log_sink("predictions", settings),
            flush_seconds=3600,
        )
        log.start()
        for b in batches:
            log.append(b, len(b))
            log.flush()
        log.close()


def test_migrations_create_the_record_columns_once(pg_url: str):
    assert db.migrate(pg_url) == db.LATEST
    threads = [threading.Thread(target=db.migrate, args=(pg_url,)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with db.connect(pg_url) as conn, conn.cursor() as cur:
        assert db.schema_version(conn) == db.LATEST
        cur.execute("SELECT version FROM driftloop.schema_version ORDER BY version")
        assert [v for (v,) in cur.fetchall()] == [m.version for m in db.MIGRATIONS]
        # the versioned DDL matches the record contracts: a new record column needs a migration
        for table, types in (("predictions", PREDICTION_TYPES), ("feedback", FEEDBACK_TYPES)):
            assert table_columns(conn, table) == {c: pg_type(t) for c, t in types.items()}


def test_postgres_log_reads_back_what_the_parquet_log_holds(pg_url: str, home: Path):
    pg, files = Settings(home=home, database_url=pg_url), Settings(home=home / "files")
    batches = [
        _batch(["a", "b", "c"], T0),
        _batch(["d"], T0 + timedelta(minutes=5), shadow=True),
        _batch(["e", "f", "g", "h"], T0 + timedelta(minutes=1), tag="m:2"),
    ]
    _write_both(pg, files, batches)
    from_pg, from_files = load_predictions(settings=pg), load_predictions(settings=files)
    assert from_pg.height == 8
    assert_frame_equal(from_pg, from_files)
    assert from_pg["Contract"].to_list()[:3] == ["One year", "", 'say "x", y']
    assert from_pg["TotalCharges"].null_count() == 3
    window = Window(T0 + timedelta(minutes=1), T0 + timedelta(minutes=5))
    assert load_window(window, pg)["request_id"].to_list() == ["e", "f", "g", "h"]
    assert_frame_equal(load_window(window, pg), load_window(window, files))
    got = load_predictions(since=T0 + timedelta(minutes=1), until="2026-01-01T00:05:00+00:00",
                           settings=pg)  # fmt: skip
    assert got["request_id"].to_list() == ["e", "f", "g", "h"]


def test_feedback_on_postgres_joins_as_on_files(pg_url: str, home: Path):
    pg, files = Settings(home=home, database_url=pg_url), Settings(home=home / "files")
    _write_both(pg, files, [_batch(["r1", "r2"], T0), _batch(["r3"], T0 + timedelta(days=2))])
    labels = feedback_frame(
        ["r1", None, "r1"],
        [None, "c-r2", None],
        [0.0, 1.0, 1.0],
        [T0 + timedelta(hours=1), T0 + timedelta(days=1), T0 + timedelta(hours=2)],
    )
    for settings in (pg, files):
        fb = BufferedLog(
            settings.feedback_dir, pl.concat, prefix="feedback", sink=log_sink("feedback", settings)
        ).start()
        fb.append(labels, labels.height)
        fb.close()
    assert_frame_equal(load_feedback(settings=pg), load_feedback(settings=files))
    joined = join_feedback(settings=pg).sort("request_id")
    assert joined["request_id"].to_list() == ["r1", "r2"]
    assert joined["label"].to_list() == [1.0, 1.0]
    assert_frame_equal(joined, join_feedback(settings=files).sort("request_id"))


def test_a_dropped_connection_costs_no_row(pg_url: str, tmp_path: Path):
    sink = PostgresSink(pg_url, "predictions")
    log = BufferedLog(
        tmp_path, prediction_frame, prefix="predictions", sink=sink, flush_seconds=3600
    ).start()
    log.append(_batch(["a"], T0), 1)
    log.flush()
    with db.connect(pg_url) as conn, conn.cursor() as cur:  # the server drops the writer
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    log.append(_batch(["b", "c"], T0), 2)
    with pytest.raises(Exception):  # noqa: B017 - psycopg2's error for a killed session
        log.flush()
    assert log.pending_rows == 2
    log.close()  # reconnects and writes the kept rows
    assert sorted(read_log(pg_url, "predictions")["request_id"]) == ["a", "b", "c"]


def test_new_and_changed_input_columns_are_added_and_widened(pg_url: str, tmp_path: Path):
    sink = PostgresSink(pg_url, "predictions")
    log = BufferedLog(tmp_path, pl.concat, prefix="p", sink=sink, flush_seconds=3600).start()
    first = prediction_frame(_batch(["a"], T0))
    log.append(first.with_columns(code=pl.lit(7), extra=pl.lit(1)), 1)
    log.flush()
    later = prediction_frame(_batch(["b"], T0 + timedelta(seconds=1)))
    log.append(later.with_columns(code=pl.lit("x7"), extra=pl.lit(2.5), new=pl.lit(True)), 1)
    log.close()
    got = read_log(pg_url, "predictions")
    assert got.schema["code"] == pl.String and got["code"].to_list() == ["7", "x7"]
    assert got.schema["extra"] == pl.Float64 and got["extra"].to_list() == [1.0, 2.5]
    assert got["new"].to_list() == [None, True]


def test_a_batch_of_many_copy_slices_arrives_whole_and_in_order(pg_url: str):
    from tasks.postgres.log import COPY_CHUNK_ROWS

    n = 2 * COPY_CHUNK_ROWS + 345  # three slices encoded while the previous one is sent
    ids = [f"r{i:06d}" for i in range(n)]
    frame = prediction_frame(_batch(ids, T0))
    sink = PostgresSink(pg_url, "predictions")
    sink.open()
    sink.write(frame)
    sink.close()
    got = read_log(pg_url, "predictions")
    assert got.height == n and got["request_id"].to_list() == ids
    assert_frame_equal(got, frame)


def test_every_column_type_round_trips_through_the_binary_copy(pg_url: str, monkeypatch):
    """Each value goes in its table column's binary format: ints, floats (NaN, an int into a
    float column), booleans, dates, timestamps with and without a zone, text (empty, non-ASCII,
    a number into a text column) and nulls, with a column null in one COPY slice only."""
    from datetime import date

    from tasks.postgres import log as pglog

    monkeypatch.setattr(pglog, "COPY_CHUNK_ROWS", 2)  # slices [0, 1], [2, 3], [4]
    base = prediction_frame(_batch([f"r{i}" for i in range(5)], T0))
    inputs = pl.DataFrame({
        "count": pl.Series([1, None, 3, 4, -(2**62)], dtype=pl.Int64),
        "ratio": [0.5, float("nan"), None, -1e300, 2.0],
        "flag": [True, False, None, True, None],
        "day": [date(1999, 12, 31), date(2000, 1, 1), None, date(2026, 3, 1), date(1970, 1, 1)],
        "seen": [datetime(1969, 7, 20, 20, 17, 40, 5), None, datetime(2000, 1, 1),
                 datetime(2026, 12, 1, 9, 30), datetime(2038, 1, 19, 3, 14, 8)],
        "city": ["Zürich", "", None, "東京", "a\tb\nc,\"d\""],
        "code": pl.Series(["x", "y", "x", None, "y"], dtype=pl.Categorical),
    })  # fmt: skip
    sink = PostgresSink(pg_url, "predictions")
    sink.open()
    sink.write(pl.concat([base.head(1), inputs.head(1)], how="horizontal"))  # columns exist
    with db.connect(pg_url) as conn, conn.cursor() as cur:  # later columns widened by the table
        cur.execute("ALTER TABLE driftloop.predictions ADD COLUMN whole double precision,"
                    " ADD COLUMN label text")  # fmt: skip
    frame = pl.concat([base, inputs], how="horizontal").with_columns(
        whole=pl.Series([1, 2, None, 4, 5]), label=pl.Series([1.5, None, 3.0, 4.0, 5.0])
    )
    sink.write(frame)
    sink.close()
    got = read_log(pg_url, "predictions").slice(1)
    expected = frame.with_columns(pl.col("code").cast(pl.String), pl.col("whole").cast(pl.Float64),
                                  pl.col("label").cast(pl.String))  # fmt: skip
    assert_frame_equal(got.select(expected.columns), expected)
