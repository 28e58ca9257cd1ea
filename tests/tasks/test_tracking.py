"""W&B tracking: disabled in unit tests, offline runs written under the home and read back."""

from __future__ import annotations

import numpy as np
import pytest

from tasks import tracking
from tasks.settings import get_settings


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
        run.log_model(
            tag="toy:v1", evals={"valid": {"auc": [0.6, 0.7]}},
            summary={"metrics": {"roc_auc": 0.81}, "note": big},
            y=np.array([0, 1, 0, 1]), scores=np.array([0.2, 0.7, 0.4, 0.9]), threshold=0.5,
            importance={"f1": 2.0, "f2": 1.0}, task="binary",
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


def test_reader_names_a_directory_without_a_run_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no run-"):
        tracking.read_offline_run(tmp_path)


def test_git_sha_names_the_code_version() -> None:
    sha = tracking.git_sha()
    assert sha is not None and len(sha.removesuffix("-dirty")) == 40
