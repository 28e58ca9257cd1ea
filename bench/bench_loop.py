"""The loop's latency: drift event -> retrain start -> new model serving, and what of it is
orchestration rather than training, with Prefect's default polling and with lowered polling.

This module runs no Prefect stack of its own; it calls the automation engineer's code:

1. ``driftloop.stack.measure_loop(poll_s: float | None) -> dict`` when it exists (``None`` =
   Prefect's default polling), returning ``event_to_retrain_start_s``,
   ``retrain_start_to_serving_s``, ``training_s`` (seconds or None) and an optional ``note``;
2. else ``driftloop.demo.run_demo`` (the real closed loop on Telco against a local stack from
   ``driftloop.stack``), with the training time read back from the Prefect API (the ``train``
   subflow run of the triggered retrain);
3. else every row says "not available yet".

Overhead = (event -> retrain start) + (retrain start -> serving) - training time.
Targets (issue 7): ≤ 15 s with default polling, ≤ 5 s with lowered polling.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from datetime import datetime
from typing import Any

from bench import harness
from bench.harness import metric, not_available, quick_skip

AREA = "loop"
PREFECT_DEFAULT_POLL_S = 10.0  # PREFECT_WORKER_QUERY_SECONDS / PREFECT_RUNNER_POLL_FREQUENCY
LOWERED_POLL_S = 1.0
MODES = (
    ("default polling", None, "≤ 15 s"),
    ("lowered polling (1 s)", LOWERED_POLL_S, "≤ 5 s"),
)
Measure = Callable[[float | None], dict[str, Any]]


def _names(mode: str, target: str) -> list[tuple[str, str, str | None]]:
    return [
        (f"drift event → retrain flow start, {mode}", "s", None),
        (f"retrain start → new model serving, {mode}", "s", None),
        (f"training time inside the retrain, {mode}", "s", None),
        (f"orchestration overhead (total − training), {mode}", "s", target),
    ]


def _provider() -> tuple[Measure | None, str]:
    """The loop measurement to use and its description (None and why, if there is none)."""
    try:
        stack = importlib.import_module("driftloop.stack")
    except Exception as exc:  # noqa: BLE001 - any import failure means "not available"
        return None, f"driftloop.stack does not import ({type(exc).__name__}: {exc})"
    measure = getattr(stack, "measure_loop", None)
    if callable(measure):
        return measure, "driftloop.stack.measure_loop"
    try:
        demo = importlib.import_module("driftloop.demo")
        demo.run_demo, demo.DemoConfig  # noqa: B018 - presence check
    except Exception as exc:  # noqa: BLE001
        why = f"neither driftloop.stack.measure_loop nor driftloop.demo.run_demo ({exc})"
        return None, why
    return _via_demo, "driftloop.demo.run_demo (Telco, fast budgets)"


def _train_seconds(api_url: str, since: datetime | None) -> float | None:
    """Run time of the ``train`` flow run(s) that started after ``since`` (the retrain's)."""
    import httpx

    body = {"flows": {"name": {"any_": ["train"]}}, "limit": 50}
    resp = httpx.post(f"{api_url}/flow_runs/filter", json=body, timeout=10.0)
    resp.raise_for_status()
    total = None
    for run in resp.json():
        start = run.get("start_time")
        if since is None or start is None or datetime.fromisoformat(start) < since:
            continue
        total = (total or 0.0) + float(run.get("total_run_time") or 0.0)
    return total


def _via_demo(poll_s: float | None) -> dict[str, Any]:
    """One closed loop through the demo; the stack is kept up to read timings, then stopped."""
    from rich.console import Console

    from driftloop.demo import DemoConfig, run_demo
    from driftloop.stack import LocalStack
    from tasks.settings import Settings

    poll = PREFECT_DEFAULT_POLL_S if poll_s is None else poll_s
    home = harness.scratch_dir() / f"loop-poll-{poll:g}"
    config = DemoConfig(home=home, fast=True, keep=True, poll_s=poll)
    try:
        summary = run_demo(config, Console(stderr=True))
        api_url = summary["prefect_ui"].rstrip("/") + "/api"
        run_id = summary["retrain_run"]["id"]
        import httpx

        run = httpx.get(f"{api_url}/flow_runs/{run_id}", timeout=10.0).json()
        start = run.get("start_time")
        training = _train_seconds(api_url, datetime.fromisoformat(start) if start else None)
        event_to_start, source = _event_to_start(api_url, home, run_id)
    finally:
        LocalStack(Settings(home=home.resolve())).down()
    promoted = summary.get("promoted")
    if event_to_start is None:
        event_to_start = summary.get("seconds_event_to_retrain_start")
        source = "event time = when the monitor run that emitted it returned"
    return {
        "event_to_retrain_start_s": event_to_start,
        "retrain_start_to_serving_s": summary.get("seconds_retrain_start_to_new_model_serving"),
        "training_s": training,
        "note": f"poll {poll:g} s; retrain run {run.get('state_type')}; "
        + ("challenger promoted" if promoted else "challenger rejected: no swap to time")
        + f"; {source}",
    }


def _event_to_start(api_url: str, home, run_id: str) -> tuple[float | None, str]:
    """Event occurrence -> retrain start from ``driftloop.prefect_api.retrain_timeline`` (the
    event's own time in the Prefect events API), when that helper exists."""
    from driftloop import prefect_api
    from tasks.settings import Settings

    timeline = getattr(prefect_api, "retrain_timeline", None)
    if timeline is None:
        return None, ""
    try:
        runs = timeline(api_url, settings=Settings(home=home.resolve()), name="telco")
    except Exception:  # noqa: BLE001 - fall back to the demo's own clock
        return None, ""
    value = next((r.get("event_to_start_s") for r in runs if str(r.get("id")) == run_id), None)
    return value, "event time from the Prefect events API (driftloop.prefect_api.retrain_timeline)"


def _rows(mode: str, target: str, timings: dict[str, Any], source: str) -> list[dict[str, Any]]:
    names = _names(mode, target)
    keys = ("event_to_retrain_start_s", "retrain_start_to_serving_s", "training_s")
    note = f"{timings.get('note', '')}; via {source}".strip("; ")
    values = [timings.get(k) for k in keys]
    event, serving, training = values
    overhead = None if None in values else event + serving - training
    out = []
    for (name, unit, tgt), value in zip(names, [*values, overhead], strict=True):
        if value is None:
            out.append(not_available(AREA, name, unit, f"not measured in this run: {note}",
                                     target=tgt, prefix="not measured"))  # fmt: skip
        else:
            out.append(metric(AREA, name, float(value), unit, target=tgt, note=note))
    return out


def run(quick: bool) -> list[dict[str, Any]]:
    measure, source = _provider()
    rows: list[dict[str, Any]] = []
    for mode, poll_s, target in MODES:
        names = _names(mode, target)
        if measure is None:
            rows += [not_available(AREA, n, u, source, target=t) for n, u, t in names]
        elif quick:
            why = f"a closed loop on a local stack takes minutes (full run: {source})"
            rows += [quick_skip(AREA, n, u, why, target=t) for n, u, t in names]
        else:
            try:
                rows += _rows(mode, target, measure(poll_s), source)
            except Exception as exc:  # noqa: BLE001 - reported, never hidden
                why = f"failed via {source}: {type(exc).__name__}: {str(exc)[:200]}"
                rows += [not_available(AREA, n, u, why, target=t, prefix="not measured")
                         for n, u, t in names]  # fmt: skip
    return rows


if __name__ == "__main__":
    harness.main(AREA, run)
