"""The closed loop, end to end, as `driftloop demo --fast` runs it against real servers.

Everything is asserted from the outside: the Prefect API (events, flow runs, parameters), the
registry's alias index, and the running service over HTTP — never from log text.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest

from driftloop.prefect_api import api_call
from tasks.settings import Settings
from tests.support.webhook import WebhookReceiver

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e
SCENARIOS = ("concept", "noise")
DEMO_TIMEOUT_S = 600


class _Demo:
    """One `driftloop demo --fast --keep --json` subprocess, started at once, awaited later."""

    def __init__(self, home: Path, scenario: str, notify_url: str) -> None:
        self.home = home
        env = {**os.environ, "DRIFTLOOP_HOME": str(home.parent / "cli-home")}
        env.pop("PREFECT_API_URL", None)
        cmd = [sys.executable, "-m", "driftloop", "demo", "--fast", "--keep", "--json",
               "--scenario", scenario, "--home", str(home), "--notify-url", notify_url]  # fmt: skip
        self._out = home.parent / "demo.json"
        self._err = home.parent / "demo.err"
        with self._out.open("wb") as out, self._err.open("wb") as err:
            self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=err)
        self.deadline = time.monotonic() + DEMO_TIMEOUT_S

    def summary(self) -> dict:
        """The demo's JSON summary, once it exited 0 (fails on a timeout or another exit)."""
        try:
            self.proc.wait(timeout=max(1.0, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise AssertionError(f"demo still running after {DEMO_TIMEOUT_S}s") from None
        assert self.proc.returncode == 0, self._err.read_text(errors="replace")[-4000:]
        return json.loads(self._out.read_text())

    def interrupt(self) -> None:
        """Interrupt the demo if it still runs (it stops what it started)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def stack_down(self) -> subprocess.Popen:
        """``driftloop stack down`` for the demo's home, started (the caller waits)."""
        env = {**os.environ, "DRIFTLOOP_HOME": str(self.home)}
        return subprocess.Popen([sys.executable, "-m", "driftloop", "stack", "down"], cwd=REPO,
                                env=env)  # fmt: skip


def _events(api: str, name: str) -> list[dict]:
    body = {"filter": {"event": {"name": [name]}}, "limit": 50}
    return api_call("POST", f"{api}/events/filter", json=body).json()["events"]


def _retrain_runs(api: str) -> list[dict]:
    dep = api_call("GET", f"{api}/deployments/name/retrain/retrain").json()
    body = {"flow_runs": {"deployment_id": {"any_": [dep["id"]]}}}
    return api_call("POST", f"{api}/flow_runs/filter", json=body).json()


def _notified(hook: WebhookReceiver, event_id: str, timeout_s: float = 60) -> None:
    """Wait until the webhook got ``event_id``, then a little longer for any duplicate."""
    deadline = time.monotonic() + timeout_s
    while event_id not in {n["id"] for n in hook.received}:
        assert time.monotonic() < deadline, f"no notification for {event_id}: {hook.received}"
        time.sleep(0.5)
    time.sleep(3)


class DemoRun(NamedTuple):
    """The home of one `driftloop demo --fast --keep` run (its stack still up) and its summary."""

    home: Path
    summary: dict


@pytest.fixture(scope="module")
def webhook():
    """The receiver of the demos' notifications (prefect.yaml's, through Prefect automations)."""
    with WebhookReceiver() as hook:
        yield hook


@pytest.fixture(scope="module")
def demos(tmp_path_factory, webhook) -> Iterator[dict[str, _Demo]]:
    """Both scenarios' demos, started together: each has its own home, stack and ports, and
    much of a demo is waiting on servers, so the two overlap (the suite's time budget); both
    stacks are stopped when the module ends."""
    started: dict[str, _Demo] = {}
    try:
        for scenario in SCENARIOS:
            home = tmp_path_factory.mktemp(f"e2e-{scenario}") / "demo"
            started[scenario] = _Demo(home, scenario, webhook.url)
        yield started
    finally:
        for demo in started.values():
            demo.interrupt()
        for down in [demo.stack_down() for demo in started.values()]:  # both stacks at once
            down.wait(timeout=120)


@pytest.fixture(scope="module")
def demo_run(request, demos: dict[str, _Demo]) -> DemoRun:
    """The finished demo of the scenario given by indirect parametrisation (its stack is up
    until the module ends)."""
    demo = demos[request.param]
    return DemoRun(demo.home, demo.summary())


def _aliases(home: Path) -> dict[str, str]:
    return json.loads(Settings(home=home).alias_index.read_text())["telco"]["aliases"]


@pytest.mark.parametrize("demo_run", ["concept"], indirect=True)
def test_late_labels_reveal_the_change_and_the_automation_retrains_once(demo_run: DemoRun) -> None:
    """Inputs keep their distribution; the labels that arrive late for an earlier window show
    the loss (issue #14): a performance event with the windows, labels and realized metrics."""
    home, summary = demo_run
    api = summary["prefect_ui"] + "/api"
    degraded = _events(api, "driftloop.performance.degraded")
    assert len(degraded) >= 1
    evidence = degraded[0]["payload"]
    assert evidence["champion_tag"] == summary["champion_before"] and evidence["retrain"] is True
    assert "realized roc_auc" in evidence["reason"] or "concept drift" in evidence["reason"]
    windows = evidence["late_labels"]["windows"]
    assert windows and sum(w["labels"] for w in windows) >= 200
    assert all(w["realized"]["roc_auc"]["lower"] <= w["realized"]["roc_auc"]["upper"]
               for w in windows if w["realized"]["roc_auc"])  # fmt: skip
    assert Path(evidence["report_html"]).exists()
    assert degraded[0]["resource"]["prefect.resource.id"] == "driftloop.model.telco"
    runs = _retrain_runs(api)
    started = [r for r in runs if r["start_time"] is not None]
    assert len(started) == 1, [(r["name"], r["state_type"]) for r in runs]
    run = started[0]
    assert run["state_type"] == "COMPLETED"
    trigger = run["parameters"]["trigger"]
    assert trigger["event"] == "driftloop.performance.degraded"
    assert trigger["evidence"]["champion_tag"] == summary["champion_before"]


@pytest.mark.parametrize("demo_run", ["concept"], indirect=True)
def test_the_challenger_is_evaluated_promoted_and_served(demo_run: DemoRun, webhook) -> None:
    home, summary = demo_run
    api = summary["prefect_ui"] + "/api"
    promoted = _events(api, "driftloop.model.promoted")
    assert len(promoted) == 1
    # exactly one notification per promotion (the automation's webhook call)
    _notified(webhook, promoted[0]["id"])
    notes = [n for n in webhook.received if n["event"] == "driftloop.model.promoted"]
    assert [n["id"] for n in notes] == [promoted[0]["id"]]
    assert notes[0]["payload"]["challenger_tag"] == promoted[0]["payload"]["challenger_tag"]
    payload = promoted[0]["payload"]
    assert payload["challenger_score"] > payload["champion_score"]
    assert payload["champion_tag"] == summary["champion_before"]
    champion = _aliases(home)["champion"]
    assert champion == summary["champion_after"] == payload["challenger_tag"]
    assert champion != summary["champion_before"]
    answer = httpx.post(summary["service"] + "/models", json={}, timeout=10).json()
    assert answer["champion"] == champion
    assert summary["after_swap_model_tags"] == [champion]
    assert summary["failed_requests"] == 0
    assert summary["auc_drifted_after_swap"] > summary["auc_drifted_before_swap"]


@pytest.mark.parametrize("demo_run", ["noise"], indirect=True)
def test_unfixable_drift_is_rejected_and_the_champion_keeps_serving(
    demo_run: DemoRun, webhook
) -> None:
    home, summary = demo_run
    api = summary["prefect_ui"] + "/api"
    assert _events(api, "driftloop.model.promoted") == []
    rejected = _events(api, "driftloop.model.rejected")
    assert len(rejected) == 1
    time.sleep(3)  # a notification would have arrived by now: a rejection sends none
    assert rejected[0]["id"] not in {n["id"] for n in webhook.received}
    assert _aliases(home)["champion"] == summary["champion_before"]
    answer = httpx.post(summary["service"] + "/models", json={}, timeout=10).json()
    assert answer["champion"] == summary["champion_before"]
    assert summary["after_swap_model_tags"] == [summary["champion_before"]]
