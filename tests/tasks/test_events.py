"""tasks.events: payload checks (pure) and the outbox against a real Prefect server (SQLite).

The server is the session's Prefect test server. The outage test emits from a process whose
API is unreachable (Prefect drops the event silently) and checks that the outbox re-emits it
once the API answers, and that the API then has it exactly once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from tasks import events


@pytest.fixture
def server(prefect_harness):
    """The session's real Prefect server (SQLite, its own process)."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value()


def _api_events(ids: list[str]):
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventIDFilter

    with get_client(sync_client=True) as client:
        flt = EventFilter(id=EventIDFilter(id=[uuid.UUID(i) for i in ids]))
        return client.read_events(filter=flt, limit=50).events


# --- pure -------------------------------------------------------------------------------


def test_resource_names_the_model():
    assert events.model_resource("telco") == {
        "prefect.resource.id": "driftloop.model.telco",
        "prefect.resource.name": "telco",
    }
    with pytest.raises(ValueError, match="model_name"):
        events.model_resource("")


def test_payload_is_normalised_to_json_types():
    payload = events.normalise_payload(
        {"score": np.float64(0.25), "n": np.int64(3), "path": Path("/x/y"), "feats": ("a", "b")}
    )
    assert payload == {"score": 0.25, "n": 3, "path": "/x/y", "feats": ["a", "b"]}
    assert type(payload["score"]) is float and type(payload["n"]) is int


def test_bad_event_and_payload_are_refused(home):
    with pytest.raises(ValueError, match="unknown event"):
        events.emit("driftloop.nope", "telco", {}, flush=False)
    with pytest.raises(TypeError, match="not JSON serialisable"):
        events.emit(events.DRIFT_DETECTED, "telco", {"x": object()}, flush=False)
    with pytest.raises(ValueError, match="NaN|Out of range"):
        events.emit(events.DRIFT_DETECTED, "telco", {"x": float("nan")}, flush=False)
    assert events.pending_events() == []  # nothing recorded for a refused event


def test_data_quality_is_not_a_retrain_trigger():
    assert events.DATA_QUALITY_FAILED not in events.RETRAIN_TRIGGERS
    assert set(events.RETRAIN_TRIGGERS) == {events.DRIFT_DETECTED, events.PERFORMANCE_DEGRADED}


# --- against the server ---------------------------------------------------------------


def test_recording_emitter_keeps_what_it_would_send_and_sends_nothing(home):
    rec = events.RecordingEmitter("r")
    assert rec.emit_drift_detected("telco", {"score": 1.0}) == "r-1"
    assert rec.emit_model_promoted("churn", {"tag": "a"}) == "r-2"
    assert rec.events == [
        ("drift_detected", "telco", {"score": 1.0}),
        ("model_promoted", "churn", {"tag": "a"}),
    ]
    assert rec.sent == [("drift_detected", {"score": 1.0}), ("model_promoted", {"tag": "a"})]
    assert events.pending_events() == [] and events.sent_events() == []
    with pytest.raises(AttributeError):
        rec.flush_outbox  # noqa: B018 (only the emit_* API)


def test_emit_records_confirms_and_moves_to_sent(server, home):
    evidence = {"drift_share": 0.4, "drifted_features": ["tenure"], "champion_tag": "telco:abc"}
    event_id = events.emit_drift_detected("telco", evidence)
    assert event_id is not None
    (pending,) = events.pending_events()
    assert pending["id"] == event_id and pending["payload"]["drift_share"] == 0.4

    assert events.wait_confirmed([event_id], timeout_s=30)
    assert events.pending_events() == []
    (sent,) = events.sent_events()
    assert sent["id"] == event_id and "confirmed_at" in sent

    (stored,) = _api_events([event_id])
    assert stored.event == events.DRIFT_DETECTED
    assert stored.resource.id == "driftloop.model.telco"
    assert stored.payload == {"reason": "drift", **evidence}


def test_event_emitted_during_an_outage_is_reemitted(server, home):
    """A process that emits while the server is unreachable and then exits: Prefect's client
    drops the event; the outbox has it and re-emits it once the API answers again."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from driftloop.supervise import free_port

    dead = f"http://127.0.0.1:{free_port()}/api"  # nothing listens there: the outage
    code = (
        "from tasks import events; "
        "print(events.emit_performance_degraded('telco', {'auc': 0.61, 'bound': 0.7}))"
    )
    env = {**os.environ, "DRIFTLOOP_HOME": str(home), "PREFECT_API_URL": dead}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    event_id = out.stdout.strip().splitlines()[-1]
    assert [r["id"] for r in events.pending_events()] == [event_id]

    with temporary_settings(updates={PREFECT_API_URL: dead}):
        report = events.flush_outbox(grace_s=0)
    assert not report.api_reachable and report.pending == [event_id]
    assert report.confirmed == [] and report.resent == []
    assert _api_events([event_id]) == []  # it never reached the server

    assert events.wait_confirmed([event_id], timeout_s=30, grace_s=0)  # the API is back
    record = json.loads((events.sent_dir() / f"{event_id}.json").read_text())
    assert record["attempts"] >= 2  # it went out again
    stored = _api_events([event_id])
    assert [e.event for e in stored] == [events.PERFORMANCE_DEGRADED]
    assert stored[0].payload["auc"] == 0.61


def test_prefect_events_worker_internals_we_read_still_exist():
    """``_rebind_events_worker`` reads Prefect's private ``EventsWorker._instance_cache_lock``,
    ``EventsWorker._instances``, each worker's ``_client._api_url``, and calls
    ``drain_all(timeout=, at_exit=)``: a Prefect that renames any of them fails here instead
    of the rebind silently doing nothing."""
    import inspect
    import threading
    from types import SimpleNamespace

    from prefect.events.clients import PrefectEventsClient
    from prefect.events.worker import EventsWorker

    assert isinstance(EventsWorker._instance_cache_lock, type(threading.Lock()))
    assert isinstance(EventsWorker._instances, dict)
    assert {"timeout", "at_exit"} <= set(inspect.signature(EventsWorker.drain_all).parameters)
    assert "self._client = " in inspect.getsource(EventsWorker._lifespan)
    assert PrefectEventsClient(api_url="http://127.0.0.1:9/api")._api_url.endswith(":9/api")
    stand_in = SimpleNamespace(_client=SimpleNamespace(_api_url="http://127.0.0.1:9/api/"))
    with EventsWorker._instance_cache_lock:
        EventsWorker._instances[-11] = stand_in
    try:
        assert "http://127.0.0.1:9/api" in events._events_worker_urls()
    finally:
        with EventsWorker._instance_cache_lock:
            EventsWorker._instances.pop(-11, None)
