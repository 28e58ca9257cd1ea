"""SIGKILL of a training run (the retrain's work: tune, fit, register a challenger) at random
points: the alias index is never half-written, the registry loads, a rerun completes, and no
model version is stored twice."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest

from tasks import registry
from tests.reliability.kit import figures
from tests.support.telco import REPO, TELCO_CSV

KILLS = 2
KILL_AFTER_S = (8.0, 25.0)  # uniform: from the flow run's start to tuning and registering


def _train(env: dict[str, str]) -> subprocess.Popen:
    args = ["train", "--data", str(TELCO_CSV), "--trials", "3", "--alias", "challenger", "--json"]
    return subprocess.Popen([sys.executable, "-m", "driftloop", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def _flow_states() -> list[str]:
    """States of this test's train runs on the session's Prefect server."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(limit=200)
    mine = [r for r in runs if (r.parameters.get("config") or {}).get("alias") == "challenger"
            and (r.parameters.get("config") or {}).get("trials") == 3]  # fmt: skip
    return [r.state_name or "?" for r in mine]


@pytest.mark.timeout(420)
def test_killed_training_leaves_a_consistent_registry(champion_home, prefect_harness):
    from prefect.settings import PREFECT_API_URL

    settings = champion_home.settings
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    rng = random.Random(7)
    torn, reads, stop = [], [0], threading.Event()

    def watch_index() -> None:  # reads the index as any reader would, all the time
        while not stop.is_set():
            try:
                json.loads(settings.alias_index.read_text())
                reads[0] += 1
            except (OSError, ValueError) as exc:
                torn.append(repr(exc))
            time.sleep(0.005)

    watcher = threading.Thread(target=watch_index, daemon=True)
    watcher.start()
    killed_at: list[float] = []
    try:
        for _ in range(KILLS):
            proc = _train(env)
            delay = rng.uniform(*KILL_AFTER_S)
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)
                killed_at.append(round(delay, 1))
            for model in registry.list_models("telco", settings):  # the registry loads ...
                registry.verify_files(registry.model_path(model["tag"], settings))
            assert registry.load_model("telco:champion", settings).tag == champion_home.champion
        stored_before = {m["tag"] for m in registry.list_models("telco", settings)}
        rerun = _train(env)
        out, err = rerun.communicate(timeout=300)
        assert rerun.returncode == 0, err[-2000:]
    finally:
        stop.set()
        watcher.join(timeout=5)
    result = json.loads(out)
    tags = [m["tag"] for m in registry.list_models("telco", settings)]
    assert len(tags) == len(set(tags))  # no version stored twice
    assert set(tags) - stored_before == {result["model_tag"]}  # the rerun added exactly one
    assert registry.get_alias("telco", registry.CHALLENGER, settings) == result["model_tag"]
    assert torn == []
    states = _flow_states()
    figures("sigkill of training runs", kills=len(killed_at), killed_after_s=killed_at,
            index_reads=reads[0], torn_index_reads=len(torn), models_stored=len(tags),
            rerun_exit=rerun.returncode, flow_run_states=sorted(states))  # fmt: skip
