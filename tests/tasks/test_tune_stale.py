"""A shared (PostgreSQL) Optuna study: a worker killed mid-trial costs no trial."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tasks.training.storage import shared_storage

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(120)
def test_a_killed_worker_s_trial_is_retried_with_its_parameters(pg_url: str):
    import optuna

    script = textwrap.dedent(
        f"""
        import time, optuna
        from tasks.training.storage import shared_storage
        study = optuna.create_study(study_name="s", storage=shared_storage({pg_url!r}, 1, 3),
                                    load_if_exists=True)
        def objective(trial):
            trial.suggest_float("x", 0, 1)
            print("running", flush=True)
            time.sleep(600)  # killed here
        study.optimize(objective, n_trials=1)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    worker = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    try:
        assert worker.stdout.readline().strip() == "running"
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    storage = shared_storage(pg_url, 1, 3)
    study = optuna.load_study(study_name="s", storage=storage)
    (lost,) = study.trials
    assert lost.state == optuna.trial.TrialState.RUNNING  # the dead worker left it running
    time.sleep(4)  # past the grace period: no heartbeat for 3 s
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    trials = optuna.load_study(study_name="s", storage=storage).trials
    states = [t.state for t in trials]
    assert states[0] == optuna.trial.TrialState.FAIL
    assert optuna.trial.TrialState.RUNNING not in states
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == lost.number]
    assert len(retried) == 1 and retried[0].params == lost.params
    assert retried[0].state == optuna.trial.TrialState.COMPLETE
