"""Event-driven retraining against a real local stack: `prefect server start` (SQLite under a
temp DRIFTLOOP_HOME), the `retrain` deployment from prefect.yaml (`prefect deploy`), a process
worker with lowered polling. Everything is asserted through the Prefect API.

- one driftloop.drift.detected -> exactly one retrain run, parameters carrying the payload
  (a data-quality event emitted just before starts nothing);
- a burst of five events -> no two retrain runs ever running at once;
- stopping the stack leaves no process behind.
The retrain is real but cheap: the deployment's config is patched to 1 trial.
"""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime

import httpx
import psutil
import pytest
from _stack_fixtures import champion_world, noise_labels, write_traffic

from driftloop.prefect_api import deployment_runs, retrain_timeline
from driftloop.stack import LocalStack, StackConfig
from tasks import events, registry

pytestmark = pytest.mark.slow  # minutes long: xdist workers start it first (tests/conftest.py)

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}
CHEAP = {"dataset": "telco", "strategy": "full_refit", "trials": 1, "timeout_s": 60,
         "min_rows": 100, "holdout_fraction": 0.3}  # fmt: skip


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with champion_world(tmp_path_factory, "automation-home") as w:
        recent = w.rows.slice(2500, 600)
        write_traffic(w.settings, w.champion, recent, noise_labels(recent))
        config = StackConfig(deployments=["retrain"], poll_s=1, scheduler=False, event_flush_s=0.5)
        local = LocalStack(w.settings, config)
        local.up()
        try:
            dep = httpx.get(f"{local.api_url}/deployments/name/retrain/retrain").json()
            params = {**dep["parameters"], "config": CHEAP}
            for _ in range(10):  # SQLite under load answers 503 "database is locked" at times
                r = httpx.patch(
                    f"{local.api_url}/deployments/{dep['id']}", json={"parameters": params}
                )
                if r.status_code != 503:
                    break
                time.sleep(1.0)
            assert r.status_code == 204, r.text
            with temporary_settings(updates={PREFECT_API_URL: local.api_url}):
                yield local
        finally:
            local.down()


def _wait_runs(api_url: str, since: datetime, n: int, timeout_s: float) -> list[dict]:
    """Wait for ``n`` retrain runs created after ``since`` to reach a terminal state."""
    deadline = time.monotonic() + timeout_s
    while True:
        runs = deployment_runs(api_url, since=since)
        if len(runs) >= n and all(r["state_type"] in TERMINAL for r in runs):
            return runs
        if time.monotonic() > deadline:
            states = [(r["name"], r["state_name"]) for r in runs]
            raise AssertionError(f"expected {n} finished retrain runs, got {states}")
        time.sleep(1.0)


def test_deployment_from_prefect_yaml(stack):
    dep = httpx.get(f"{stack.api_url}/deployments/name/retrain/retrain").json()
    assert dep["work_pool_name"] == "driftloop-process"
    assert dep["concurrency_limit"] == 1 or dep["global_concurrency_limit"]["limit"] == 1
    assert dep["concurrency_options"]["collision_strategy"] == "CANCEL_NEW"
    (schedule,) = dep["schedules"]
    assert schedule["schedule"]["cron"] == "0 3 * * 1"  # the weekly retrain
    autos = httpx.post(f"{stack.api_url}/automations/filter", json={}).json()
    (auto,) = [a for a in autos if a["actions"][0].get("deployment_id") == dep["id"]]
    assert set(auto["trigger"]["expect"]) == set(events.RETRAIN_TRIGGERS)


def test_drift_event_starts_exactly_one_retrain_with_the_payload(stack):
    since = datetime.now(UTC)
    events.emit_data_quality_failed("telco", {"schema_break": True, "missing": ["tenure"]})
    evidence = {
        "drift_share": 0.42, "drifted_features": ["tenure", "Contract"], "threshold": 0.3,
        "window": ["2026-06-01T00:00:00+00:00", "2026-06-01T10:00:00+00:00"],
        "reference_profile": "/p/ref.bin", "current_profile": "/p/cur.bin",
        "champion_tag": registry.get_alias("telco", "champion"), "report_path": "/r/x.json",
    }  # fmt: skip
    event_id = events.emit_drift_detected("telco", evidence)
    emitted = datetime.now(UTC)
    (run,) = _wait_runs(stack.api_url, since, 1, timeout_s=180)

    assert run["state_type"] == "COMPLETED", run
    trigger = run["parameters"]["trigger"]
    assert trigger["evidence"] == {"reason": "drift", **evidence}  # whole dict, JSON types kept
    assert trigger["reason"] == "drift" and trigger["model"] == "telco"
    assert trigger["event"] == events.DRIFT_DETECTED and trigger["event_id"] == event_id
    assert run["parameters"]["config"]["trials"] == 1
    (timeline,) = retrain_timeline(stack.api_url, stack.settings, "telco", since)
    assert timeline["event_id"] == event_id and timeline["event_occurred"] is not None
    assert timeline["event_occurred"] <= emitted < run["start_time"]
    print(f"\nemit -> retrain flow start: {timeline['event_to_start_s']:.1f}s (poll 1s)")
    # the retrain really ran: it gated a challenger and said so with an event
    done = [
        r
        for r in events.pending_events() + events.sent_events()
        if r["event"] in (events.MODEL_PROMOTED, events.MODEL_REJECTED)
    ]
    assert [r["payload"]["trigger"]["event_id"] for r in done] == [event_id]
    assert done[0]["payload"]["champion_score"] is not None
    assert events.wait_confirmed([event_id], timeout_s=10)
    # nothing else was triggered (the data-quality event included)
    assert len(deployment_runs(stack.api_url, since=since)) == 1


def test_event_burst_never_runs_two_retrains_at_once(stack):
    since = datetime.now(UTC)
    ids = [events.emit_drift_detected("telco", {"burst": i}, flush=False) for i in range(5)]
    runs = _wait_runs(stack.api_url, since, 5, timeout_s=180)

    assert len(runs) == 5
    assert sorted(r["parameters"]["trigger"]["event_id"] for r in runs) == sorted(ids)
    assert {r["state_type"] for r in runs} <= {"COMPLETED", "CANCELLED"}
    started = [r for r in runs if r["start_time"] is not None]
    assert any(r["state_type"] == "COMPLETED" for r in runs)
    # A run the limit cancels can carry start_time == end_time (the instant it was cancelled):
    # it never executed. Only such zero-length intervals are set aside, and only if cancelled.
    never_ran = [r for r in started if r["start_time"] == r["end_time"]]
    assert all(r["state_type"] == "CANCELLED" for r in never_ran), never_ran
    started = [r for r in started if r not in never_ran]
    for a, b in itertools.combinations(started, 2):
        overlap = a["start_time"] < b["end_time"] and b["start_time"] < a["end_time"]
        assert not overlap, [
            (r["name"], r["state_type"], r["start_time"], r["end_time"]) for r in (a, b)
        ]
    summary = [(r["state_name"], r["start_time"], r["end_time"]) for r in runs]
    print(f"\nburst: {summary}")


def test_stack_down_leaves_nothing_running(stack):
    pids = set()
    for proc in stack.processes.values():
        root = psutil.Process(proc.record.pid)
        pids |= {root.pid, *(c.pid for c in root.children(recursive=True))}
    assert len(pids) >= 2
    outcomes = stack.down()
    assert set(outcomes) == {"prefect-server", "prefect-worker"}
    alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    assert alive == []
    assert not stack.state_path.exists()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{stack.api_url}/health", timeout=2.0)
