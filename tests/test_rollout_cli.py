"""`driftloop rollout start|status|abort`: one JSON object each, the index and the outbox agree."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from driftloop.cli import build_app
from tasks import events, registry
from tests.support.models import save_toy_pair


@pytest.fixture
def models(home) -> tuple[str, str]:
    return save_toy_pair("telco")


def _run(*args: str) -> tuple[int, dict | None, str]:
    result = CliRunner().invoke(build_app(), ["rollout", *args])
    out = result.stdout.strip()
    return result.exit_code, json.loads(out) if out else None, result.stderr


def _outbox(event: str) -> list[dict]:
    records = events.pending_events() + events.sent_events()
    return [r for r in records if r["event"] == event]


def test_start_status_abort(models) -> None:
    a, b = models
    code, started, err = _run("start", b, "--mode", "canary", "--ramp", "0.2,1", "--json")
    assert code == 0, err
    exp = started["experiment"]
    assert (exp["champion"], exp["challenger"], exp["share"]) == (a, b, 0.2)
    assert exp["config"]["ramp"] == [0.2, 1.0] and exp["config"]["alpha"] == 0.05
    (event,) = _outbox(events.ROLLOUT_STARTED)
    assert event["payload"]["experiment"]["id"] == exp["id"]

    code, status, err = _run("status", "--json")
    assert code == 0, err
    assert status["running"] and status["experiment"]["id"] == exp["id"]
    assert [r["arm"] for r in status["arms"]] == ["champion", "challenger"]
    assert status["next_look"]["action"] == "continue"  # no labels yet

    code, again, err = _run("start", b, "--mode", "canary", "--json")
    assert code == 1 and "already has rollout" in err

    code, aborted, err = _run("abort", "--reason", "by hand", "--json")
    assert code == 0, err
    assert aborted["champion_after"] == a and aborted["action"] == "abort"
    assert registry.read_index()["telco"]["aliases"] == {"champion": a}
    (event,) = _outbox(events.ROLLOUT_ROLLED_BACK)
    assert event["payload"]["explanation"] == "by hand"
    assert _run("status", "--json")[1] == {"model": "telco", "running": False}
    code, _, err = _run("abort", "--json")
    assert code == 1 and "no rollout running" in err


def test_start_refuses_direct_and_bad_options(models) -> None:
    _, b = models
    code, _, err = _run("start", b, "--mode", "direct")
    assert code == 1 and "promotion" in err
    code, _, err = _run("start", b, "--mode", "canary", "--ramp", "0.5,0.2")
    assert code == 1 and "ramp" in err
    assert "experiment" not in registry.read_index()["telco"]
