"""W&B tracking: disabled in unit tests, offline runs written under the home and read back."""

from __future__ import annotations

import numpy as np
import pytest

from tasks import tracking
from tasks.settings import get_settings
from tasks.training.model import Scored, TrainedModel


def _tiny_model_and_scores() -> tuple[TrainedModel, Scored]:
    """A real two-feature booster and four scored test rows: what ``log_model`` reads."""
    import lightgbm as lgb
    import polars as pl

    X = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 0.5], [1.0, 0.2]] * 5)
    y = np.array([0, 1, 0, 1] * 5)
    params = {"objective": "binary", "verbosity": -1, "min_data_in_leaf": 1, "num_threads": 1}
    booster = lgb.train(params, lgb.Dataset(X, y, feature_name=["f1", "f2"]), num_boost_round=2)
    model = TrainedModel(booster, booster, params, None, {"valid": {"auc": [0.6, 0.7]}}, 2)
    y4, s4, none = np.array([0, 1, 0, 1]), np.array([0.2, 0.7, 0.4, 0.9]), np.array([])
    return model, Scored(none, none, y4, s4, s4, pl.DataFrame(), none, pl.DataFrame())


def test_disabled_mode_is_a_no_op(home) -> None:
    assert tracking.tracking_mode() == "disabled"  # tests/conftest.py sets WANDB_MODE
    with tracking.start_run(get_settings(), name="x", config={}) as run:
        run.log_trial({"number": 0, "value": 0.5, "state": "COMPLETE", "params": {"a": 1}})
        run.log_summary({"m": 1})
    assert run.run_dir is None and run.run is None
    assert not (home / "wandb").exists()


def test_mode_is_offline_without_a_key_and_online_with_one(monkeypatch) -> None:
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert tracking.tracking_mode() == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    assert tracking.tracking_mode() == "online"


def test_offline_run_is_written_under_the_home_and_read_back(home, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    big = "x" * 70_000  # forces records spanning several 32 KiB blocks of the log format
    with tracking.start_run(get_settings(), name="t", config={"data_version": "abc"}) as run:
        for i in range(3):
            row = {"number": i, "value": 0.7 + i / 10, "state": "COMPLETE", "params": {"lr": i}}
            run.log_trial(row)
        model, scored = _tiny_model_and_scores()
        run.log_model(
            tag="toy:v1", model=model, scored=scored, threshold=0.5, task="binary",
            summary={"metrics": {"roc_auc": 0.81}, "note": big},
        )  # fmt: skip
    assert run.run_dir and str(home.resolve()) in run.run_dir
    back = tracking.read_offline_run(run.run_dir)
    assert back.config["data_version"] == "abc"
    trials = [h for h in back.history if "trial/value" in h]
    assert [t["trial/value"] for t in trials] == pytest.approx([0.7, 0.8, 0.9])
    assert [h["final/valid_auc"] for h in back.history if "final/valid_auc" in h] == [0.6, 0.7]
    assert back.summary["metrics/roc_auc"] == 0.81
    assert back.summary["model_tag"] == "toy:v1"
    assert back.summary["note"] == big
    assert any(k.startswith("test/roc_curve") for k in back.summary)
    assert any(k.startswith("feature_importance") for k in back.summary)


def test_pinned_wandb_writes_the_offline_format_the_reader_assumes(home, monkeypatch) -> None:
    """``read_offline_run`` parses wandb's private ``run-*.wandb`` format (LevelDB-log framing
    of ``wandb_internal_pb2.Record``; see tasks/tracking.py). If a wandb upgrade changes the
    header, the framing or the record fields, this fails first."""
    from pathlib import Path

    monkeypatch.setenv("WANDB_MODE", "offline")
    with tracking.start_run(get_settings(), name="probe", config={"k": "v"}) as run:
        run.run.log({"probe": 1.25})
        run.run.summary["final"] = 7
    (file,) = Path(run.run_dir).glob("run-*.wandb")
    assert file.read_bytes()[:4] == b":W&B"
    back = tracking.read_offline_run(run.run_dir)  # waits for the run's exit record
    assert [h["probe"] for h in back.history if "probe" in h] == [1.25]
    from wandb.proto import wandb_internal_pb2 as pb

    last = pb.Record()
    last.ParseFromString(list(tracking._log_records(file.read_bytes()))[-1])
    assert last.WhichOneof("record_type") == "exit"  # what the reader waits for
    assert back.summary["final"] == 7 and back.config["k"] == "v"


def test_reader_names_a_directory_without_a_run_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no run-"):
        tracking.read_offline_run(tmp_path)


def test_git_sha_names_the_code_version() -> None:
    sha = tracking.git_sha()
    assert sha is not None and len(sha.removesuffix("-dirty")) == 40
