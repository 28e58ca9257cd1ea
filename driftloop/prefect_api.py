"""The Prefect REST API as the stack, the demo, the benchmark and the tests use it: a retrying
call, the work pool, deployments, flow runs and events, read back from outside the flows."""

from __future__ import annotations

import contextlib
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx

from driftloop.supervise import StackError

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from tasks.settings import Settings

RETRAIN_DEPLOYMENT = "retrain/retrain"
MONITOR_DEPLOYMENT = "monitor/monitor"


def api_call(method: str, url: str, timeout_s: float = 60.0, **kwargs: Any) -> httpx.Response:
    """One Prefect API call, retried while the server is briefly unavailable (its SQLite
    database answers 503 under load) or not answering yet."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            resp = httpx.request(method, url, timeout=15, **kwargs)
        except (httpx.TransportError, httpx.TimeoutException):
            if time.monotonic() > deadline:
                raise
        else:
            if resp.status_code not in (502, 503, 504) or time.monotonic() > deadline:
                resp.raise_for_status()
                return resp
        time.sleep(0.5)


def use_api(api_url: str) -> AbstractContextManager:
    """Point this process's Prefect client at ``api_url`` (flows run here are recorded there)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    return temporary_settings(updates={PREFECT_API_URL: api_url})


def api_healthy(api_url: str | None) -> bool:
    if not api_url:
        return False
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{api_url}/health", timeout=2.0).is_success
    return False


def create_process_pool(api_url: str, name: str) -> None:
    """Create a process work pool (idempotent: 409 means it exists already)."""
    from prefect.workers.process import ProcessWorker

    body = {
        "name": name,
        "type": "process",
        "base_job_template": ProcessWorker.get_default_base_job_template(),
    }
    try:
        api_call("POST", f"{api_url}/work_pools/", json=body)
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code != 409:
            raise StackError(f"creating work pool {name!r}: {exc.response.text}") from None


def pool_ready(api_url: str, name: str) -> bool:
    """Whether the pool reports READY (once a worker has sent its heartbeat)."""
    with contextlib.suppress(httpx.HTTPError):
        return (
            httpx.get(f"{api_url}/work_pools/{name}", timeout=2.0).json().get("status") == "READY"
        )
    return False


def flow_runs(api_url: str, deployment: str) -> list[dict[str, Any]]:
    """Flow runs of ``<flow>/<deployment>`` (full records: state, parameters, times)."""
    flow_name, _, dep_name = deployment.partition("/")
    dep = api_call("GET", f"{api_url}/deployments/name/{flow_name}/{dep_name}").json()
    body = {"flow_runs": {"deployment_id": {"any_": [dep["id"]]}}, "sort": "START_TIME_ASC"}
    return api_call("POST", f"{api_url}/flow_runs/filter", json=body).json()


def events_named(api_url: str, name: str, since: datetime) -> list[dict[str, Any]]:
    """Events called ``name`` that occurred at or after ``since`` (at most 50)."""
    body = {
        "filter": {
            "event": {"name": [name]},
            "occurred": {"since": since.isoformat()},
        },
        "limit": 50,
    }
    return api_call("POST", f"{api_url}/events/filter", json=body).json().get("events", [])


def set_deployment_parameters(
    api_url: str, parameters: dict[str, Any], deployment: str = RETRAIN_DEPLOYMENT
) -> None:
    """Override some of a deployment's parameters (what `prefect deploy` set, merged)."""
    dep = api_call("GET", f"{api_url}/deployments/name/{deployment}").json()
    merged = {**dep.get("parameters", {}), **parameters}
    api_call("PATCH", f"{api_url}/deployments/{dep['id']}", json={"parameters": merged})


def set_serving_url(api_url: str, serving_url: str, deployment: str = MONITOR_DEPLOYMENT) -> bool:
    """Point the deployed monitor at the service (its ``config.serving_url``); False when the
    monitor is not deployed."""
    found = httpx.get(f"{api_url}/deployments/name/{deployment}", timeout=15)
    if found.status_code == 404:
        return False
    config = {**api_call("GET", f"{api_url}/deployments/name/{deployment}").json()
              .get("parameters", {}).get("config", {}), "serving_url": serving_url}  # fmt: skip
    set_deployment_parameters(api_url, {"config": config}, deployment)
    return True


# --- what the benchmark and the tests read back from the API ---------------------------


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def deployment_runs(
    api_url: str, deployment: str = RETRAIN_DEPLOYMENT, since: datetime | None = None
) -> list[dict[str, Any]]:
    """Flow runs of ``flow/deployment`` created at or after ``since``, oldest first, with
    their state, parameters and the timestamps a latency measurement needs."""
    dep = httpx.get(f"{api_url}/deployments/name/{deployment}", timeout=10.0)
    dep.raise_for_status()
    body = {"flow_runs": {"deployment_id": {"any_": [dep.json()["id"]]}}, "limit": 200}
    resp = httpx.post(f"{api_url}/flow_runs/filter", json=body, timeout=10.0)
    resp.raise_for_status()
    runs = []
    for run in resp.json():
        created = _ts(run["created"])
        if since is not None and created is not None and created < since:
            continue
        state = run.get("state") or {}
        runs.append(
            {
                "id": run["id"],
                "name": run["name"],
                "state_type": state.get("type"),
                "state_name": state.get("name"),
                "created": created,
                "expected_start_time": _ts(run.get("expected_start_time")),
                "start_time": _ts(run.get("start_time")),
                "end_time": _ts(run.get("end_time")),
                "parameters": run.get("parameters") or {},
            }
        )
    return sorted(runs, key=lambda r: r["created"])


def retrain_timeline(
    api_url: str,
    settings: Settings | None = None,
    name: str = "telco",
    since: datetime | None = None,
) -> list[dict[str, Any]]:
    """For each retrain run since ``since``: the triggering event's time (from the API), the
    run's created/start/end times and state, and when the champion alias moved during the run
    (alias-index history, 1 s resolution). Seconds ``event_to_start_s`` / ``start_to_champion_s``
    are the loop latencies the system benchmark reports."""
    from tasks.registry import read_index
    from tasks.settings import get_settings

    history = read_index(settings or get_settings()).get(name, {}).get("history", [])
    moves = [_ts(h["time"]) for h in history if h["alias"] == "champion"]
    out = []
    for run in deployment_runs(api_url, since=since):
        event_id = (run["parameters"].get("trigger") or {}).get("event_id")
        occurred = None
        if event_id:
            body = {"filter": {"id": {"id": [event_id]}}, "limit": 1}
            found = httpx.post(f"{api_url}/events/filter", json=body, timeout=10.0).json()
            occurred = _ts(found["events"][0]["occurred"]) if found.get("events") else None
        start, end = run["start_time"], run["end_time"]
        moved = next((m for m in moves if start and m and start.replace(microsecond=0) <= m
                      and (end is None or m <= end)), None)  # fmt: skip
        out.append(
            {
                **{k: run[k] for k in ("id", "name", "state_type", "created", "start_time")},
                "end_time": end,
                "event_id": event_id,
                "event_occurred": occurred,
                "champion_moved_at": moved,
                "event_to_start_s": (start - occurred).total_seconds()
                if start and occurred
                else None,
                "start_to_champion_s": (moved - start).total_seconds() if moved and start else None,
            }
        )
    return out
