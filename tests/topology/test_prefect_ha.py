"""Prefect server on PostgreSQL with Redis: two API processes and one services process
(``driftloop stack up --database --redis --api-servers 2``). A drift event sent to either API
starts exactly one retrain run (the automation lives in the services process: without Redis
it would never see the events the other API received)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from driftloop.prefect_api import deployment_runs
from driftloop.stack import LocalStack, StackConfig
from tasks import events
from tasks.settings import Settings
from tests.support.netns import private_redis, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def _send_drift(api_url: str) -> str:
    """POST one driftloop.drift.detected event to this API process; return its id."""
    event_id = str(uuid.uuid4())
    event = {
        "id": event_id, "occurred": datetime.now(UTC).isoformat(),
        "event": events.DRIFT_DETECTED, "resource": events.model_resource("telco"),
        "payload": {"reason": "drift", "drift_share": 0.5}, "related": [],
    }  # fmt: skip
    httpx.post(f"{api_url}/events", json=[event], timeout=10).raise_for_status()
    return event_id


def test_a_drift_event_to_either_api_starts_exactly_one_retrain(tmp_path: Path, pg_url: str):
    settings = Settings(home=tmp_path / "home")
    with private_redis() as redis_url:
        config = StackConfig(
            database=pg_url, redis=redis_url, api_servers=2, deployments=["retrain"],
            worker=False, scheduler=False, event_flush_s=0.5,
        )  # fmt: skip
        stack = LocalStack(settings, config)
        try:
            timings = stack.up()["timings"]
            print(f"\nstack up on PostgreSQL + Redis, 2 APIs + services: {timings}")
            assert len(stack.api_urls) == 2 and len(set(stack.api_urls)) == 2
            assert "prefect-services" in stack.processes
            seen: list[str] = []
            for target, other in (stack.api_urls, stack.api_urls[::-1]):
                since = datetime.now(UTC)
                event_id = _send_drift(target)

                def triggered(other: str = other, since: datetime = since) -> list[dict]:
                    runs = deployment_runs(other, since=since)  # read through the other API
                    return [r for r in runs if r["parameters"]["trigger"].get("event_id")]

                wait_for(lambda: triggered(), 90, 0.5, f"a retrain run for the event to {target}")
                time.sleep(3)  # room for a duplicate to show up
                (run,) = triggered()
                assert run["parameters"]["trigger"]["event_id"] == event_id
                seen.append(event_id)
            assert len(set(seen)) == 2
        finally:
            stack.down()
