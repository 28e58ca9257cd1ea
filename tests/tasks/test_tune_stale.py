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


@pytest.mark.timeout(60)
def test_tune_workers_start_together(pg_url: str):
    """A tune worker waits on the shared study until every worker has checked in (each with
    its own connection, as on separate hosts); one that never comes holds nobody up for
    longer than the barrier's limit."""
    import threading

    import optuna

    from tasks.training.distributed import _CHECK_IN, start_together

    def study() -> optuna.Study:  # one storage (connection pool) per worker
        return optuna.load_study(study_name="s", storage=shared_storage(pg_url, 1, 3))

    optuna.create_study(study_name="s", storage=shared_storage(pg_url, 1, 3))
    seen: dict[int, list[int]] = {}
    first = threading.Thread(target=lambda: seen.update({0: start_together(study(), 0, 2)}))
    first.start()
    watcher = study()
    deadline = time.monotonic() + 30
    while f"{_CHECK_IN}0" not in watcher.user_attrs and time.monotonic() < deadline:
        time.sleep(0.05)
    assert f"{_CHECK_IN}0" in watcher.user_attrs and first.is_alive()  # checked in, waiting
    seen[1] = start_together(study(), 1, 2)  # the late worker: everyone is in, no wait
    first.join(timeout=30)
    assert seen == {0: [0, 1], 1: [0, 1]}
    # a third worker that never checks in: the others go on at the limit
    assert start_together(study(), 0, 3, limit_s=0.5) == [0, 1]
