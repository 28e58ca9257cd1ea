"""Notifications through Prefect automations against a real local Prefect server: promotion,
rollback and data-quality failure each call a webhook receiver on loopback exactly once; other
events call nothing. The automations come from prefect.yaml's ``notifications:`` section."""

from __future__ import annotations

import time

import httpx
import pytest
import yaml

from driftloop.automations import CRASH_DETECTION
from driftloop.notify import BLOCK_NAME, apply_notifications, load_notifications
from driftloop.stack import REPO, LocalStack, StackConfig
from tasks import events
from tasks.settings import Settings
from tests.support.webhook import WebhookReceiver

PREFECT_YAML = REPO / "prefect.yaml"


def test_section_declares_the_three_notifications_and_prefect_deploy_accepts_the_file():
    from prefect.cli.deploy._models import PrefectYamlModel

    found = {n.name: n.expect for n in load_notifications(PREFECT_YAML)}
    assert found == {
        "notify-model-promoted": [events.MODEL_PROMOTED, events.ROLLOUT_PROMOTED],
        "notify-model-rolled-back": [events.MODEL_ROLLED_BACK, events.ROLLOUT_ROLLED_BACK],
        "notify-data-quality-failed": [events.DATA_QUALITY_FAILED],
    }
    PrefectYamlModel.model_validate(yaml.safe_load(PREFECT_YAML.read_text()))  # ignored key


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A Prefect server (no deployments, no worker) for this module's home."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    home = tmp_path_factory.mktemp("notify-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DRIFTLOOP_HOME", str(home))
        config = StackConfig(deploy=False, worker=False, scheduler=False, event_flush_s=0.5)
        local = LocalStack(Settings(home=home), config)
        local.up()
        try:
            with temporary_settings(updates={PREFECT_API_URL: local.api_url}):
                yield local
        finally:
            local.down()


def test_each_notified_event_calls_the_webhook_once(server):
    with WebhookReceiver() as hook:
        notifications = load_notifications(PREFECT_YAML)
        apply_notifications(hook.url, notifications)
        apply_notifications(hook.url, notifications)  # idempotent: still one automation each
        autos = httpx.post(f"{server.api_url}/automations/filter", json={}).json()
        actions = {a["name"]: a["actions"][0]["type"] for a in autos}
        # the stack's own crash detection, beside one automation per notification
        assert sorted(actions) == sorted([CRASH_DETECTION, *(n.name for n in notifications)])
        assert actions.pop(CRASH_DETECTION) == "change-flow-run-state"
        assert set(actions.values()) == {"call-webhook"}
        block = httpx.get(
            f"{server.api_url}/block_types/slug/webhook/block_documents/name/{BLOCK_NAME}"
        )
        assert block.status_code == 200

        events.emit_drift_detected("telco", {"score": 0.5})  # not notified
        promoted = events.emit_model_promoted("telco", {"challenger_tag": "telco:new"})
        rolled = events.emit_model_rolled_back("telco", {"champion": "telco:old"})
        dq = events.emit_data_quality_failed("telco", {"schema_break": True})
        got = hook.wait_for(3, timeout_s=60)
        time.sleep(3)  # any duplicate or stray notification would have arrived by now
        got = list(hook.received)

    by_event = {g["event"]: g for g in got}
    assert len(got) == 3 and set(by_event) == {
        events.MODEL_PROMOTED, events.MODEL_ROLLED_BACK, events.DATA_QUALITY_FAILED,
    }  # fmt: skip
    assert by_event[events.MODEL_PROMOTED]["id"] == promoted
    assert by_event[events.MODEL_PROMOTED]["payload"]["challenger_tag"] == "telco:new"
    assert by_event[events.MODEL_ROLLED_BACK]["id"] == rolled
    assert by_event[events.DATA_QUALITY_FAILED]["id"] == dq
    assert by_event[events.DATA_QUALITY_FAILED]["payload"]["schema_break"] is True
    assert all(g["model"] == "telco" for g in got)


def test_cli_rollback_notifies_once(server):
    from typer.testing import CliRunner

    from driftloop.cli import build_app
    from tasks import registry
    from tests.support.homes import tiny_champion_home
    from tests.support.models import tiny_models

    home = tiny_champion_home(server.settings, tiny_models(), challenger=True)
    registry.promote("telco", home.other, reason="test", settings=server.settings)
    with WebhookReceiver() as hook:
        apply_notifications(hook.url, load_notifications(PREFECT_YAML))
        result = CliRunner().invoke(build_app(), ["models", "rollback", "telco", "--json"])
        assert result.exit_code == 0, result.output
        (note,) = hook.wait_for(1, timeout_s=60)
        time.sleep(3)
        assert len(hook.received) == 1
    assert note["event"] == events.MODEL_ROLLED_BACK and note["model"] == "telco"
    assert note["payload"] == {"champion_tag": home.champion, "rolled_back": home.other,
                               "reason": "manual rollback"}  # fmt: skip
