"""driftloop's events: names, payloads and a durable outbox. The only ``prefect.events`` importer.

``emit_event`` returns in milliseconds and silently drops the event when the Prefect server is
down, so every event first goes to an outbox under ``$DRIFTLOOP_HOME/events/outbox/<id>.json``.
:func:`flush_outbox` (run at the start of every :func:`emit`, and by the monitor each cycle)
asks the Prefect API which outbox events it has stored, moves those to ``events/sent/`` and
re-emits the rest with their original id, so delivery is at least once. A re-emitted event that
did arrive after all is harmless: the server stores an id once and its trigger service skips
ids it has already seen.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from tasks.io import dumps, locked, write_json
from tasks.settings import Settings, get_settings

DRIFT_DETECTED = "driftloop.drift.detected"
DRIFT_REPORTED = "driftloop.drift.reported"  # input drift the estimate calls harmless (#14)
PERFORMANCE_DEGRADED = "driftloop.performance.degraded"
DATA_QUALITY_FAILED = "driftloop.data_quality.failed"
MODEL_PROMOTED = "driftloop.model.promoted"
MODEL_REJECTED = "driftloop.model.rejected"
MODEL_ROLLED_BACK = "driftloop.model.rolled_back"
ROLLOUT_STARTED = "driftloop.rollout.started"
ROLLOUT_ADVANCED = "driftloop.rollout.advanced"
ROLLOUT_PROMOTED = "driftloop.rollout.promoted"
ROLLOUT_ROLLED_BACK = "driftloop.rollout.rolled_back"
ROLLOUT_EVENTS = {  # by kind (tasks.rollout.report.EventKind)
    "started": ROLLOUT_STARTED,
    "advanced": ROLLOUT_ADVANCED,
    "promoted": ROLLOUT_PROMOTED,
    "rolled_back": ROLLOUT_ROLLED_BACK,
}
ALL_EVENTS = (
    DRIFT_DETECTED,
    PERFORMANCE_DEGRADED,
    DATA_QUALITY_FAILED,
    MODEL_PROMOTED,
    MODEL_REJECTED,
    DRIFT_REPORTED,
    MODEL_ROLLED_BACK,
    *ROLLOUT_EVENTS.values(),
)
RETRAIN_TRIGGERS = (DRIFT_DETECTED, PERFORMANCE_DEGRADED)  # a data-quality event never retrains
RESOURCE_PREFIX = "driftloop.model."
DEFAULT_REASON = {
    DRIFT_DETECTED: "drift",
    PERFORMANCE_DEGRADED: "performance",
    DATA_QUALITY_FAILED: "data_quality",
    MODEL_PROMOTED: "promoted",
    MODEL_REJECTED: "rejected",
    DRIFT_REPORTED: "drift_reported",
    MODEL_ROLLED_BACK: "rolled_back",
    **{event: kind for kind, event in ROLLOUT_EVENTS.items()},
}

DEFAULT_GRACE_S = 30.0  # how long a sent event may take to show up in the API before a resend
_API_TIMEOUT_S = 5.0


@dataclass
class OutboxReport:
    """What one :func:`flush_outbox` pass did."""

    confirmed: list[str] = field(default_factory=list)
    resent: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    api_reachable: bool = False


def model_resource(model_name: str) -> dict[str, str]:
    """The Prefect resource an event is about: the model (registry name == dataset name)."""
    if not model_name or not isinstance(model_name, str):
        raise ValueError(f"model_name must be a non-empty string, got {model_name!r}")
    return {
        "prefect.resource.id": f"{RESOURCE_PREFIX}{model_name}",
        "prefect.resource.name": model_name,
    }


def normalise_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload as plain JSON types (paths, datetimes, numpy values converted)."""
    if not isinstance(payload, dict):
        raise ValueError(f"event payload must be a dict, got {type(payload).__name__}")
    return json.loads(dumps(payload))


# --- outbox -----------------------------------------------------------------------------


def outbox_dir(settings: Settings | None = None) -> Path:
    return (settings or get_settings()).events_outbox_dir


def sent_dir(settings: Settings | None = None) -> Path:
    return (settings or get_settings()).events_sent_dir


def _write(path: Path, record: dict[str, Any]) -> None:
    write_json(path, record, sort_keys=True)


@contextlib.contextmanager
def _outbox_lock(settings: Settings) -> Iterator[None]:
    outbox_dir(settings).mkdir(parents=True, exist_ok=True)
    with locked(settings.events_outbox_lock):
        yield


def pending_events(settings: Settings | None = None) -> list[dict[str, Any]]:
    """Outbox records not yet confirmed by the Prefect API, oldest first."""
    folder = outbox_dir(settings)
    if not folder.exists():
        return []
    records = [json.loads(p.read_text()) for p in folder.glob("*.json")]
    return sorted(records, key=lambda r: r["occurred"])


def sent_events(settings: Settings | None = None) -> list[dict[str, Any]]:
    """Outbox records the Prefect API has confirmed, oldest first."""
    folder = sent_dir(settings)
    if not folder.exists():
        return []
    return sorted(
        (json.loads(p.read_text()) for p in folder.glob("*.json")), key=lambda r: r["occurred"]
    )


def _events_worker_urls() -> set[str]:
    from prefect.events.worker import EventsWorker

    with EventsWorker._instance_cache_lock:  # private, but this module is the one place
        instances = list(EventsWorker._instances.values())
    urls = {getattr(getattr(i, "_client", None), "_api_url", None) for i in instances}
    return {u.rstrip("/") for u in urls if isinstance(u, str)}


def _rebind_events_worker() -> None:
    """Prefect keeps ONE events worker per process, bound to the API URL current when it
    started (its cache key ignores the URL). After PREFECT_API_URL changes in a process (tests,
    CLI, benchmarks that start another server), its events would go to the old server; stop it
    so the next emit starts one for the current URL."""
    import asyncio

    from prefect.events.worker import EventsWorker
    from prefect.settings import PREFECT_API_URL

    current = (PREFECT_API_URL.value() or "").rstrip("/")
    try:
        stale = current and _events_worker_urls() - {current}
        if not stale:
            return
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop()
            return  # inside an event loop drain_all returns a coroutine: leave it be
        EventsWorker.drain_all(timeout=5.0, at_exit=False)
    except Exception:  # noqa: BLE001 - never let this bookkeeping break an emit
        return


def reset_events_worker(timeout_s: float = 10.0) -> None:
    """Deliver and stop Prefect's process-wide events worker. Call it while the server is still
    up, before stopping it or switching PREFECT_API_URL: a worker left bound to a dead server
    retries every queued event (flow and task state events too) for seconds each."""
    import asyncio

    from prefect.events.worker import EventsWorker

    with contextlib.suppress(RuntimeError):
        asyncio.get_running_loop()
        return
    with contextlib.suppress(Exception):
        EventsWorker.drain_all(timeout=timeout_s, at_exit=False)


def _send(record: dict[str, Any]) -> bool:
    """Hand one record to Prefect's events worker; False when Prefect is not emitting events."""
    from prefect.events import emit_event

    _rebind_events_worker()

    sent = emit_event(
        event=record["event"],
        resource=record["resource"],
        payload=record["payload"],
        id=uuid.UUID(record["id"]),
        occurred=datetime.fromisoformat(record["occurred"]),
    )
    return sent is not None


def _stored_ids(ids: list[str], since: datetime) -> set[str] | None:
    """Which of ``ids`` the Prefect API has stored; None when the API cannot be reached."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventIDFilter, EventOccurredFilter

    found: set[str] = set()
    try:
        with get_client(sync_client=True, httpx_settings={"timeout": _API_TIMEOUT_S}) as client:
            for start in range(0, len(ids), 50):
                chunk = ids[start : start + 50]
                flt = EventFilter(
                    id=EventIDFilter(id=[uuid.UUID(i) for i in chunk]),
                    occurred=EventOccurredFilter(
                        since=since, until=datetime.now(UTC) + timedelta(minutes=5)
                    ),
                )
                page = client.read_events(filter=flt, limit=len(chunk))
                found.update(str(e.id) for e in page.events)
    except Exception:  # noqa: BLE001 - any API failure means "not confirmed", never an error
        return None
    return found


def flush_outbox(
    settings: Settings | None = None, *, grace_s: float = DEFAULT_GRACE_S
) -> OutboxReport:
    """Confirm outbox events through the Prefect API; re-emit those unconfirmed after ``grace_s``.

    Never raises for an unreachable server: the events just stay pending for the next call.
    """
    settings = settings or get_settings()
    report = OutboxReport()
    with _outbox_lock(settings):
        records = pending_events(settings)
        if not records:
            report.api_reachable = True
            return report
        since = min(datetime.fromisoformat(r["occurred"]) for r in records) - timedelta(seconds=1)
        stored = _stored_ids([r["id"] for r in records], since)
        report.api_reachable = stored is not None
        now = datetime.now(UTC)
        for record in records:
            path = outbox_dir(settings) / f"{record['id']}.json"
            if stored is not None and record["id"] in stored:
                record["confirmed_at"] = now.isoformat()
                _write(sent_dir(settings) / path.name, record)
                path.unlink(missing_ok=True)
                report.confirmed.append(record["id"])
                continue
            last = datetime.fromisoformat(record.get("last_sent") or record["occurred"])
            if stored is not None and (now - last).total_seconds() >= grace_s and _send(record):
                record["attempts"] = record.get("attempts", 0) + 1
                record["last_sent"] = now.isoformat()
                _write(path, record)
                report.resent.append(record["id"])
            report.pending.append(record["id"])
    return report


def wait_confirmed(
    event_ids: list[str],
    settings: Settings | None = None,
    *,
    timeout_s: float = 30.0,
    grace_s: float = DEFAULT_GRACE_S,
) -> bool:
    """Block until every id in ``event_ids`` is confirmed (or ``timeout_s`` passes), re-emitting
    unconfirmed events older than ``grace_s`` meanwhile."""
    import time

    deadline = time.monotonic() + timeout_s
    wanted = set(event_ids)
    while True:
        flush_outbox(settings, grace_s=grace_s)
        if not wanted & {r["id"] for r in pending_events(settings)}:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)


# --- emitting ---------------------------------------------------------------------------


def emit(
    event: str,
    model_name: str,
    payload: dict[str, Any],
    *,
    settings: Settings | None = None,
    flush: bool = True,
) -> str | None:
    """Record ``event`` in the outbox and emit it; return its id, or None if Prefect is off.

    The payload always carries a ``reason`` (default: the event's kind); deployment triggers
    template it into the retrain's parameters. A None result still leaves the event in the
    outbox: the next flush sends it.
    """
    if event not in ALL_EVENTS:
        raise ValueError(f"unknown event {event!r}; known: {', '.join(ALL_EVENTS)}")
    settings = settings or get_settings()
    if flush:
        flush_outbox(settings)
    record = {
        "id": str(uuid.uuid4()),
        "event": event,
        "resource": model_resource(model_name),
        "payload": {"reason": DEFAULT_REASON[event], **normalise_payload(payload)},
        "occurred": datetime.now(UTC).isoformat(),
        "attempts": 1,
    }
    record["last_sent"] = record["occurred"]
    with _outbox_lock(settings):
        _write(outbox_dir(settings) / f"{record['id']}.json", record)
    return record["id"] if _send(record) else None


class _Send(Protocol):
    def __call__(self, model_name: str, evidence: dict[str, Any], **kw: Any) -> str | None: ...


def _sender(event: str, doc: str) -> _Send:
    """:func:`emit` of one event, named ``emit_<what>`` (``driftloop.<area>.<what>``): the API
    the monitor, the retrain and the CLI call (``tasks.monitoring.decision.Emitter``)."""

    def send(model_name: str, evidence: dict[str, Any], **kw: Any) -> str | None:
        return emit(event, model_name, evidence, **kw)

    area, what = event.split(".")[-2:]
    send.__name__ = send.__qualname__ = f"emit_{area}_{what}"
    send.__doc__ = doc
    return send


emit_drift_detected = _sender(DRIFT_DETECTED, "Drift beyond the configured bounds: retrains.")
emit_drift_reported = _sender(
    DRIFT_REPORTED, "Input drift with no evidence of loss (the decision policy): never retrains."
)
emit_performance_degraded = _sender(
    PERFORMANCE_DEGRADED, "Live metrics on labeled feedback fell below the bound: retrains."
)
emit_data_quality_failed = _sender(
    DATA_QUALITY_FAILED, "A schema break or failed quality check: alerts, never retrains."
)
emit_model_promoted = _sender(
    MODEL_PROMOTED, "The challenger won the gate and is now champion (evidence: both scores)."
)
emit_model_rejected = _sender(
    MODEL_REJECTED, "The challenger lost the gate; the champion stays (evidence: both scores)."
)
emit_model_rolled_back = _sender(
    MODEL_ROLLED_BACK, "The champion was rolled back to the one before (evidence: tags, reason)."
)


class RecordingEmitter:
    """This module's ``emit_<event>`` API recording ``(event, model name, payload)`` in
    :attr:`events` instead of sending (replay runs, tests); ids are ``<prefix>-<n>``."""

    def __init__(self, prefix: str = "recorded") -> None:
        self.prefix = prefix
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    @property
    def sent(self) -> list[tuple[str, dict[str, Any]]]:
        """``(event, payload)``, in the order recorded."""
        return [(kind, evidence) for kind, _, evidence in self.events]

    def __getattr__(self, name: str) -> _Send:
        if not name.startswith("emit_"):
            raise AttributeError(name)

        def record(model_name: str, evidence: dict[str, Any], **kw: Any) -> str:
            self.events.append((name.removeprefix("emit_"), model_name, evidence))
            return f"{self.prefix}-{len(self.events)}"

        return record


def emit_rollout(kind: str, model_name: str, evidence: dict[str, Any], **kw: Any) -> str | None:
    """A rollout ``started``, ``advanced``, was ``promoted`` or ``rolled_back`` (evidence: the
    experiment, the always-valid test's statistics, the guardrails, the per-arm table)."""
    return emit(ROLLOUT_EVENTS[kind], model_name, evidence, **kw)


def prefect_api_url() -> str | None:
    """The Prefect API URL this process would emit to (for diagnostics)."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or os.environ.get("PREFECT_API_URL")
