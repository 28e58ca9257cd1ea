"""Distributed tuning through Prefect: the train flow fans its Optuna trials out to runs of
the tune-worker deployment (prefect.yaml), one per work queue, each taken by its own process
worker; the study is on PostgreSQL. A real server (``LocalStack``), ``prefect deploy``, two
``prefect worker start`` processes; the train flow runs here against that server.

* two workers on one study each run at least 30% of the trials (the runs wait for each other
  on the study before their first trial, so a worker whose process started later under load
  still gets its share), the study holds the requested number of finished trials (at most
  one over), none running or waiting, and the flow registers the refit of the best trial;
* with each worker in its own network namespace, killing every process of one namespace
  mid-study loses no trial (the killed trial is failed after its heartbeat grace period and
  re-run with its parameters by the other worker) and the flow still completes.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from driftloop import prefect_api
from driftloop.stack import LocalStack, StackConfig
from flows.train import TrainConfig, train
from tasks.settings import Settings
from tasks.training.storage import open_storage
from tests.support.netns import network, private_postgres, wait_for

POOL = "driftloop-process"
QUEUES = ["tune-q0", "tune-q1"]

# the server and `prefect deploy` alone took 80-100 s at load 15
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def _config(trials: int) -> TrainConfig:
    return TrainConfig(trials=trials, timeout_s=150, num_threads=1, tune_workers=2,
                       tune_queues=QUEUES, profile=False, fail_on_quality=False)  # fmt: skip


def _workers(api_url: str) -> list[str]:
    body = prefect_api.api_call("POST", f"{api_url}/work_pools/{POOL}/workers/filter", json={})
    return [w["name"] for w in body.json()]


@contextlib.contextmanager
def tune_stack(home: Path, host: str, prefixes: list[list[str]]) -> Iterator[LocalStack]:
    """A server with the tune-worker deployment, and one process worker per queue (its argv
    behind ``prefixes[i]``, e.g. ``ip netns exec NS``); everything stopped on the way out."""
    config = StackConfig(host=host, deployments=["tune-worker"], deploy=False, worker=False,
                         poll_s=1, scheduler=False)  # fmt: skip
    stack = LocalStack(Settings(home=home), config)
    try:
        stack.up()  # the server alone: the workers boot while the deployment is made
        stack.create_pool()
        for i, (queue, prefix) in enumerate(zip(QUEUES, prefixes, strict=True)):
            argv = [*prefix, sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL,
                    "--work-queue", queue, "--type", "process", "--name", f"tune-w{i}",
                    "--install-policy", "never"]  # fmt: skip
            stack.start_service(f"tune-worker-{i}", argv)
        stack.deploy()
        wait_for(lambda: len(_workers(stack.api_url)) == 2, 90, 0.5, "two workers polling")
        yield stack
    finally:
        stack.down()


def _study(url: str, name: str):
    import optuna

    return optuna.load_study(study_name=name, storage=open_storage(url))


def _check_study(study, trials: int) -> dict[int, int]:
    """Finished = requested (at most one over), none pending; finished trials per worker."""
    import optuna

    state = optuna.trial.TrialState
    finished = [t for t in study.trials if t.state in (state.COMPLETE, state.PRUNED)]
    assert trials <= len(finished) <= trials + 1, [t.state.name for t in study.trials]
    assert not [t for t in study.trials if t.state in (state.RUNNING, state.WAITING)]
    per_worker = {w: sum(t.user_attrs.get("worker") == w for t in finished) for w in (0, 1)}
    assert sum(per_worker.values()) == len(finished)  # every trial ran on a tune worker
    return per_worker


def test_two_workers_share_one_study(tmp_path: Path, pg_url: str, monkeypatch):
    monkeypatch.setenv("DRIFTLOOP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DRIFTLOOP_OPTUNA_STORAGE", pg_url)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    trials = 24
    with (
        tune_stack(tmp_path / "home", "127.0.0.1", [[], []]) as stack,
        prefect_api.use_api(stack.api_url),
    ):
        out = train(_config(trials))
        runs = prefect_api.flow_runs(stack.api_url, "tune-worker/tune-worker")
    assert sorted(r["work_queue_name"] for r in runs) == QUEUES
    assert [r["state_type"] for r in runs] == ["COMPLETED", "COMPLETED"]
    per_worker = _check_study(_study(pg_url, out["tuning"]["study_name"]), trials)
    assert min(per_worker.values()) >= 0.3 * sum(per_worker.values()), per_worker
    assert out["tuning"]["trials"] == sum(per_worker.values())
    assert out["model_tag"] and out["metrics"]["roc_auc"] > 0.8


def _signal_namespace(netns: str, sig: str) -> None:
    pids = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True,
                          check=True).stdout.split()  # fmt: skip
    subprocess.run(["kill", f"-{sig}", *pids], check=False)


def _kill_mid_trial(netns: str, running_on_worker_1, timeout_s: float) -> None:
    """Freeze every process of ``netns`` (SIGSTOP); if worker 1 then has a trial running in
    the study (a frozen process cannot finish it), kill them all (SIGKILL); else thaw them
    (it was between trials) and look again, for at most ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _signal_namespace(netns, "STOP")
        time.sleep(0.3)  # a commit already on the wire lands
        if running_on_worker_1():
            _signal_namespace(netns, "KILL")
            return
        _signal_namespace(netns, "CONT")
        time.sleep(0.2)
    raise AssertionError(f"worker 1 had no trial running when frozen within {timeout_s}s")


def test_a_killed_worker_namespace_loses_no_trial(tmp_path: Path, monkeypatch):
    import optuna

    trials = 30
    with network(2) as net, private_postgres(net.gateway) as pg:
        monkeypatch.setenv("DRIFTLOOP_HOME", str(tmp_path / "home"))
        monkeypatch.setenv("DRIFTLOOP_OPTUNA_STORAGE", pg)
        monkeypatch.setenv("DRIFTLOOP_OPTUNA_STALE_AFTER_S", "8")  # heartbeat every 2 s
        monkeypatch.setenv("WANDB_MODE", "disabled")
        prefixes = [host.argv() for host in net.hosts]
        with (
            tune_stack(tmp_path / "home", net.gateway, prefixes) as stack,
            prefect_api.use_api(stack.api_url),
        ):
            result: dict = {}

            def run_train() -> None:  # Prefect's settings context is per thread
                with prefect_api.use_api(stack.api_url):
                    result["out"] = train(_config(trials))

            storage = open_storage(pg)  # the schema, before the flow's and workers' connections
            runner = threading.Thread(target=run_train)
            runner.start()

            def worker_1_trials() -> list:
                summaries = optuna.get_all_study_summaries(storage)
                if not summaries:
                    return []
                study = optuna.load_study(study_name=summaries[0].study_name, storage=storage)
                return [t for t in study.trials if t.user_attrs.get("worker") == 1]

            wait_for(lambda: len(worker_1_trials()) >= 4, 120, 0.2, "worker 1 running trials")
            running = optuna.trial.TrialState.RUNNING
            _kill_mid_trial(
                net.hosts[1].netns, lambda: any(t.state == running for t in worker_1_trials()), 30
            )
            killed_at = time.monotonic()
            runner.join(timeout=150)
            assert not runner.is_alive() and "out" in result
        study = _study(pg, result["out"]["tuning"]["study_name"])
        per_worker = _check_study(study, trials)
        lost = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
        assert lost, "the kill hit no running trial"
        for trial in lost:  # each lost trial was re-run, with its parameters, by worker 0
            (retry,) = [t for t in study.trials
                        if t.system_attrs.get("failed_trial") == trial.number]  # fmt: skip
            # (those it had drawn when killed: the retry draws any it had not reached yet)
            assert trial.params.items() <= retry.params.items()
            assert retry.user_attrs["worker"] == 0
            assert retry.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        assert per_worker[0] > 0 and time.monotonic() > killed_at
