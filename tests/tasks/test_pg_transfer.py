"""Moving a home's Parquet log and file alias index to PostgreSQL keeps every row and alias."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import lightgbm as lgb
import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tasks import registry
from tasks.features import FeatureSpec
from tasks.postgres import aliases
from tasks.postgres.transfer import TransferError, transfer_home
from tasks.predlog import (
    BufferedLog,
    ScoredBatch,
    feedback_frame,
    load_feedback,
    load_predictions,
    log_sink,
    prediction_frame,
)
from tasks.settings import Settings
from tests.support.pg import temp_database

T0 = datetime(2026, 1, 1, tzinfo=UTC)
FEATURES = FeatureSpec(columns=("a", "b"), categories={})


def _booster(seed: int) -> lgb.Booster:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(100, 2))
    params = {"objective": "binary", "verbosity": -1, "num_threads": 1, "seed": seed}
    return lgb.train(params, lgb.Dataset(X, (X[:, 0] > 0).astype(float)), num_boost_round=3)


def _home_with_state(settings: Settings) -> None:
    """A Parquet log (with a schema break between batches), feedback, and an alias index."""
    log = BufferedLog(log_sink("predictions", settings), pl.concat, flush_seconds=3600).start()
    for i in range(4):
        n = 50 + i
        ids = [f"r{i}-{j}" for j in range(n)]
        frame = prediction_frame(
            ScoredBatch(
                inputs=pl.DataFrame({"customerID": ids, "tenure": np.arange(n) + i}),
                request_ids=ids, entity_ids=ids, ts=T0 + timedelta(minutes=10 - i),
                model_tag="toy:a", scores=np.linspace(0, 1, n), decisions=None, latency_ms=2.0,
            )
        )  # fmt: skip
        if i == 3:  # a later contract types tenure as text
            frame = frame.with_columns(pl.col("tenure").cast(pl.String) + "m")
        log.append(frame, n)
        log.flush()
    log.close()
    fb = BufferedLog(log_sink("feedback", settings), pl.concat).start()
    labels = feedback_frame(["r0-1", None], [None, "r1-2"], [1.0, 0.0], [T0, T0])
    fb.append(labels, labels.height)
    fb.close()
    save = registry.save_model
    tags = [save(_booster(s), name="toy", features=FEATURES, metadata={}, settings=settings)
            for s in (1, 2, 3)]  # fmt: skip
    for tag in tags:
        registry.promote("toy", tag, settings=settings)
    registry.set_alias("toy", registry.CHALLENGER, tags[0], reason="shadow", settings=settings)
    registry.rollback("toy", reason="bad canary", settings=settings)
    registry.promote("other", tags[1], settings=settings)


def test_transfer_moves_every_row_and_alias_and_refuses_a_second_time(home: Path):
    settings = Settings(home=home)
    _home_with_state(settings)
    with temp_database() as url:
        moved = transfer_home(settings, url)
        assert (moved.predictions, moved.feedback, moved.models) == (50 + 51 + 52 + 53, 2, 2)
        on_pg = Settings(home=home, database_url=url)
        files = load_predictions(settings=settings)
        assert files.schema["tenure"] == pl.String  # the files' own reader relaxed the break
        assert_frame_equal(load_predictions(settings=on_pg), files)
        assert_frame_equal(load_feedback(settings=on_pg), load_feedback(settings=settings))
        index = registry.read_index(settings)
        assert aliases.read_index(url) == index
        assert moved.history == len(index["toy"]["history"]) + len(index["other"]["history"])
        with pytest.raises(TransferError, match="already holds rows"):
            transfer_home(settings, url)
        assert load_predictions(settings=on_pg).height == moved.predictions  # nothing doubled


def test_a_failed_transfer_leaves_the_database_empty(home: Path, monkeypatch):
    settings = Settings(home=home)
    _home_with_state(settings)
    with temp_database() as url:

        def broken(cur, index):  # the logs are copied, then the alias step fails
            raise RuntimeError("connection lost")

        monkeypatch.setattr(aliases, "insert_index", broken)
        with pytest.raises(RuntimeError, match="connection lost"):
            transfer_home(settings, url)
        monkeypatch.undo()
        on_pg = Settings(home=home, database_url=url)
        assert load_predictions(settings=on_pg).height == 0
        assert aliases.read_index(url) == {}
        assert transfer_home(settings, url).predictions == 206  # and it can be done again


def test_migrate_command_moves_the_home_and_reports_without_credentials(home: Path):
    import json

    from typer.testing import CliRunner

    from driftloop.cli import build_app

    _home_with_state(Settings(home=home))
    app, runner = build_app(), CliRunner()
    with temp_database() as url:
        done = runner.invoke(app, ["migrate", "--to", url, "--json"])
        assert done.exit_code == 0, done.output
        result = json.loads(done.stdout)
        assert result == {
            "to": url.rpartition("@")[2], "predictions": 206, "feedback": 2, "models": 2,
            "alias_moves": result["alias_moves"],
        }  # fmt: skip
        assert result["alias_moves"] == sum(
            len(e["history"]) for e in registry.read_index(Settings(home=home)).values()
        )
        again = runner.invoke(app, ["migrate", "--to", url])
        assert again.exit_code == 1 and "already holds rows" in again.stderr
    gone = runner.invoke(app, ["migrate", "--to", url])  # the database was dropped
    assert gone.exit_code == 1 and gone.stderr.startswith("error: PostgreSQL at")
    bad = runner.invoke(app, ["migrate", "--to", "sqlite:///x.db"])
    assert bad.exit_code == 1 and "postgresql://" in bad.stderr
