"""SIGKILL of a training run (the retrain's work: tune, fit, register a challenger) at random
points of its observed progress: every killed run ends Crashed on the Prefect server (the
crash-detection automation: its heartbeat stopped), the alias index is never half-written,
the registry loads, a rerun completes, and no model version is stored twice.

A ``driftloop train`` runs its flow in-process: nothing but the missing heartbeat tells the
server it died. The kill points are chosen from what is observed: once the run is Running in
the Prefect API, a seeded random share of a reference run's observed duration. At that point
the run's processes are frozen (SIGSTOP) and killed only if the server still has the run
Running; one that completed first (faster than the reference, under load) is let finish and
another run drawn (at most ``MAX_MISSES``), so every kill counted hits a running flow. A run
set Running that never beats stands for one killed before its first heartbeat left the
process."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING

import pytest

from driftloop.automations import apply_crash_detection
from tasks import registry
from tasks.settings import Settings
from tests.reliability.kit import figures
from tests.support.telco import REPO, TELCO_CSV

pytestmark = pytest.mark.slow  # minutes long: xdist workers start it first (tests/conftest.py)

if TYPE_CHECKING:
    from prefect.client.schemas.objects import State

KILLS = 2
SEED = 7
HEARTBEAT_S, GRACE_S = 30, 10  # Prefect's minimum heartbeat; a short grace for the test
CRASHED_WITHIN_S = HEARTBEAT_S + GRACE_S + 35  # the window, Prefect's 5 s evaluation, load
KILL_SHARE = (0.0, 0.8)  # of the reference run's Running-to-exit time, after Running
MAX_MISSES = 3  # runs that completed before their kill point (a faster run than the reference)


def _train(env: dict[str, str]) -> subprocess.Popen:
    args = ["train", "--data", str(TELCO_CSV), "--trials", "3", "--alias", "challenger", "--json"]
    return subprocess.Popen([sys.executable, "-m", "driftloop", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip


def _runs() -> dict[str, State]:
    """Flow run id -> current state of every train run on the session's Prefect server."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["train"])))
    return {str(r.id): r.state for r in runs}


def _silent_run() -> str:
    """A train run set Running whose process never beats: one killed before its first
    heartbeat left the process (only the server's own Running event tells of it)."""
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.states import Running

    with get_client(sync_client=True) as client:
        run = client.create_flow_run(flow(name="train")(lambda: None))
        client.set_flow_run_state(run.id, Running())
    return str(run.id)


def _running_run(proc: subprocess.Popen, known: set[str], timeout_s: float = 120) -> str:
    """The id of the new train run once the API has it Running (the process still alive)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"train exited before Running: {proc.stderr.read()[-2000:]}"
        running = [i for i, s in _runs().items() if i not in known and s.is_running()]
        if running:
            return running[0]
        time.sleep(0.1)
    raise AssertionError(f"no train run Running within {timeout_s}s")


def _frozen_while_running(proc: subprocess.Popen, run_id: str) -> bool:
    """Stop the run's processes (SIGSTOP) and tell whether the server still has it Running:
    a frozen process cannot complete it, so the SIGKILL that follows hits a running flow. A
    run already Completed (its process only tearing down, under load) is let go: not a kill."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGSTOP)
        time.sleep(0.5)  # a state update already on the wire lands
        if _runs()[run_id].is_running():
            return True
        os.killpg(proc.pid, signal.SIGCONT)
    proc.communicate(timeout=300)
    assert proc.returncode == 0, f"a run that completed exited {proc.returncode}"
    return False


def _wait_crashed(killed: dict[str, float]) -> dict[str, float]:
    """Seconds from each kill (wall clock) to its run's Crashed state, as the server stamped
    it; fails once a run is not Crashed ``CRASHED_WITHIN_S`` after its kill."""
    while True:
        states = {i: s for i, s in _runs().items() if i in killed}
        crashed = {
            i: s.timestamp.timestamp() - killed[i] for i, s in states.items() if s.is_crashed()
        }
        assert all("No heartbeat" in (states[i].message or "") for i in crashed), states
        late = {i: s.type.value for i, s in states.items() if i not in crashed
                and time.time() - killed[i] > CRASHED_WITHIN_S}  # fmt: skip
        assert not late, f"not Crashed {CRASHED_WITHIN_S}s after the kill: {late}"
        if len(crashed) == len(killed):
            assert max(crashed.values()) <= CRASHED_WITHIN_S, crashed
            return {i: round(t, 1) for i, t in crashed.items()}
        time.sleep(0.5)


@pytest.mark.timeout(480)
def test_killed_training_is_crashed_and_leaves_a_consistent_registry(
    champion_home, prefect_harness
):
    from prefect.settings import PREFECT_API_URL

    settings = champion_home.settings
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(),
           "DRIFTLOOP_FLOW_HEARTBEAT_S": str(HEARTBEAT_S)}  # fmt: skip
    rng = random.Random(SEED)
    torn, reads, stop = [], [0], threading.Event()

    def watch_index() -> None:  # reads the index as any reader would, all the time
        while not stop.is_set():
            try:
                json.loads(settings.alias_index.read_text())
                reads[0] += 1
            except (OSError, ValueError) as exc:
                torn.append(repr(exc))
            time.sleep(0.005)

    apply_crash_detection(Settings(flow_heartbeat_s=HEARTBEAT_S, crash_grace_s=GRACE_S))
    watcher = threading.Thread(target=watch_index, daemon=True)
    watcher.start()
    killed: dict[str, float] = {}  # run id -> when it was killed
    kill_after: list[float] = []
    missed: list[float] = []  # delays at which the run had already completed
    proc: subprocess.Popen | None = None
    try:
        known = set(_runs())
        proc = _train(env)  # the reference run: how long a run lasts once Running
        reference = _running_run(proc, known)
        started = time.monotonic()
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        duration = time.monotonic() - started
        for _ in range(KILLS + MAX_MISSES):
            if len(kill_after) == KILLS:
                break
            known = set(_runs())
            proc = _train(env)
            run_id = _running_run(proc, known)
            delay = rng.uniform(*KILL_SHARE) * duration
            time.sleep(delay)
            if not _frozen_while_running(proc, run_id):  # it finished first: not a kill
                missed.append(round(delay, 1))
                continue
            os.killpg(proc.pid, signal.SIGKILL)
            killed[run_id] = time.time()  # wall clock: compared with the server's stamps
            proc.wait(timeout=30)
            kill_after.append(round(delay, 1))
            for model in registry.list_models("telco", settings):  # the registry loads ...
                registry.verify_files(registry.model_path(model["tag"], settings))
            assert registry.load_model("telco:champion", settings).tag == champion_home.champion
        assert len(kill_after) == KILLS, f"runs completed before their kill points: {missed}"
        silent = _silent_run()
        killed[silent] = time.time()
        stored_before = {m["tag"] for m in registry.list_models("telco", settings)}
        known = set(_runs())
        proc = _train(env)
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        crashed = _wait_crashed(killed)
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        stop.set()
        watcher.join(timeout=5)
        apply_crash_detection(Settings())  # the session's server keeps the default window
    result = json.loads(out)
    tags = [m["tag"] for m in registry.list_models("telco", settings)]
    assert len(tags) == len(set(tags))  # no version stored twice
    assert set(tags) - stored_before == {result["model_tag"]}  # the rerun added exactly one
    assert registry.get_alias("telco", registry.CHALLENGER, settings) == result["model_tag"]
    assert torn == []
    states = _runs()
    (rerun,) = set(states) - known
    assert len(kill_after) == KILLS and set(crashed) == set(killed)
    assert states[reference].is_completed() and states[rerun].is_completed()  # not crashed
    figures("sigkill of training runs", kills=len(kill_after), seed=SEED,
            run_s=round(duration, 1), killed_after_running_s=kill_after,
            crashed_after_kill_s=[crashed[i] for i in killed if i != silent],
            never_beat_crashed_after_s=crashed[silent], crash_window_s=HEARTBEAT_S + GRACE_S,
            index_reads=reads[0], torn_index_reads=len(torn), models_stored=len(tags),
            missed_kill_points_s=missed, rerun_exit=proc.returncode)  # fmt: skip
