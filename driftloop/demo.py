"""The closed loop on real data, against real local servers, narrated.

Stages: start the local stack (Prefect server on SQLite, process work pool, deployments from
prefect.yaml, a worker) -> ingest + train the first champion on part of the data -> start
``bentoml serve`` -> replay the rest as traffic, first in-distribution, then drifted, with
delayed labels through ``/feedback`` -> monitor windows -> the drift event fires -> the Prefect
automation starts the retrain deployment -> the gate promotes (or rejects) -> the service
swaps by itself. Everything is measured from the outside: the Prefect API, the registry, HTTP.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx
import numpy as np
import polars as pl
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from driftloop.stack import api_call

REPO = Path(__file__).resolve().parents[1]
DEMO_MARKER = ".driftloop-demo"
Scenario = Literal["concept", "noise"]


class DemoConfig(BaseModel):
    """Knobs of one demo run; ``fast`` shrinks budgets for tests (≤ 2 minutes)."""

    dataset: str = "telco"
    data: Path = REPO / "data" / "telco_churn.csv"
    home: Path = Path(".driftloop") / "demo"
    scenario: Scenario = "concept"
    fast: bool = False
    keep: bool = False
    seed: int = 7
    reference_share: float = 0.5  # of the valid rows: the first champion's training data
    trials: int = 30
    retrain_trials: int = 12
    drift_column: str | None = None  # the rule's feature for concept drift (default: numeric)
    drift_severity: float = 0.8
    batch: int = 100  # records per /predict call
    poll_s: float = 1.0
    timeout_s: float = 240.0  # for the automation to finish the retrain

    def budgets(self) -> DemoConfig:
        if not self.fast:
            return self
        return self.model_copy(update={"trials": 8, "retrain_trials": 6})


@dataclass
class Timeline:
    """Each stage with its wall time, narrated as it goes."""

    console: Console
    stages: list[tuple[str, float, str]] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[dict[str, str]]:
        note: dict[str, str] = {}
        start = time.monotonic()
        with self.console.status(f"[bold]{name}[/]…"):
            yield note
        took = time.monotonic() - start
        self.stages.append((name, took, note.get("detail", "")))
        self.console.print(
            f"[green]✓[/] {name} [dim]({took:.1f}s, t+{time.monotonic() - self.t0:.0f}s)[/]"
            + (f" — {note['detail']}" if note.get("detail") else "")
        )


# --- data --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoData:
    reference: Path  # the first champion trains on this
    calm: pl.DataFrame  # in-distribution traffic
    drifted: list[pl.DataFrame]  # drifted traffic, one frame per monitor window
    after: pl.DataFrame  # drifted traffic replayed after the swap (never trained on)


def prepare_data(config: DemoConfig, dataset, workdir: Path) -> DemoData:
    """Split the valid rows into reference / calm / drifted windows / after-swap traffic."""
    from tasks.ingest.compose import read_valid_rows
    from tasks.ingest.snapshot import write_table
    from tasks.simulate import DriftSpec, inject_drift

    rows = read_valid_rows(config.data, dataset).accepted
    rows = rows.sample(fraction=1.0, shuffle=True, seed=config.seed)
    n_ref = int(rows.height * config.reference_share)
    reference, live = rows[:n_ref], rows[n_ref:]
    reference_path = write_table(reference, workdir / "reference.csv")
    n = live.height
    calm, rest = live[: n // 4], live[n // 4 :]
    tilt = most_telling_category(reference, dataset)
    covariate = inject_drift(rest, dataset, DriftSpec("covariate", 1.0, tilt, config.seed))
    if config.scenario == "concept":
        spec = DriftSpec("concept", config.drift_severity, config.drift_column, config.seed)
    else:
        spec = DriftSpec("label_noise", 1.0, seed=config.seed)
    drifted = inject_drift(covariate, dataset, spec)
    k = drifted.height // 3
    return DemoData(reference_path, calm, [drifted[:k], drifted[k : 2 * k]], drifted[2 * k :])


def most_telling_category(frame: pl.DataFrame, dataset) -> str | None:
    """The categorical feature whose categories differ most in positive rate: tilting the
    traffic towards one of its categories is drift that matters to the model."""
    if dataset.task != "binary" or not dataset.categorical_features:
        return None
    y = (pl.col(dataset.target) == dataset.positive_class).cast(pl.Float64)
    spread = {
        c: frame.group_by(c).agg(y.mean().alias("r"))["r"].drop_nulls()
        for c in dataset.categorical_features
    }
    return max(spread, key=lambda c: spread[c].max() - spread[c].min())


# --- traffic -----------------------------------------------------------------------------


@dataclass
class Replay:
    """What a replayed phase sent and got back."""

    started: datetime
    ended: datetime
    request_ids: list[str]
    scores: np.ndarray
    labels: np.ndarray
    tags: list[str]
    failures: int  # 5xx or no answer: the service's fault
    rejected: int  # 4xx: the request broke the contract (drifted data can)


def replay(client: httpx.Client, frame: pl.DataFrame, dataset, batch: int) -> Replay:
    """POST the rows to /predict in batches; their labels are sent later (:func:`send_labels`)."""
    inputs = frame.drop(dataset.target)
    truth = (frame[dataset.target] == dataset.positive_class).to_numpy().astype(float)
    started = datetime.now(UTC)
    request_ids: list[str] = []
    scores: list[float] = []
    labels: list[float] = []
    tags: list[str] = []
    failures = rejected = 0
    for lo in range(0, inputs.height, batch):
        records = inputs[lo : lo + batch].to_dicts()
        try:
            resp = client.post("/predict", json={"records": records})
        except httpx.HTTPError:
            failures += len(records)
            continue
        if 400 <= resp.status_code < 500:
            rejected += len(records)
            continue
        if resp.status_code != 200:
            failures += len(records)
            continue
        for p, y in zip(resp.json()["predictions"], truth[lo : lo + batch], strict=True):
            request_ids.append(p["request_id"])
            scores.append(p["score"])
            tags.append(p["model_tag"])
            labels.append(float(y))
    return Replay(
        started, datetime.now(UTC), request_ids, np.array(scores), np.array(labels), tags,
        failures, rejected,
    )  # fmt: skip


def send_labels(client: httpx.Client, phase: Replay) -> None:
    """The delayed ground truth of a replayed phase, through /feedback."""
    items = [
        {"request_id": r, "label": float(y)}
        for r, y in zip(phase.request_ids, phase.labels, strict=True)
    ]
    for lo in range(0, len(items), 500):
        client.post("/feedback", json={"feedback": items[lo : lo + 500]}).raise_for_status()


def wait_logged(phase: Replay, timeout_s: float = 20.0) -> None:
    """The service logs in buffered batches: wait until this phase's rows are on disk."""
    from tasks.predlog import load_predictions

    want = len(phase.request_ids)
    wait_for(
        lambda: load_predictions(since=phase.started).height >= want,
        timeout_s, what=f"{want} logged predictions",
    )  # fmt: skip


def auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    from tasks.metrics import roc_auc

    if len(set(labels.tolist())) < 2:
        return None
    return roc_auc(labels, scores)


# --- Prefect API -------------------------------------------------------------------------


def prefect_api(api_url: str):
    """Point this process's Prefect client at the stack (flows run here are recorded there)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    return temporary_settings(updates={PREFECT_API_URL: api_url})


def flow_runs(api_url: str, deployment: str) -> list[dict[str, Any]]:
    """Flow runs of ``<flow>/<deployment>`` (full records: state, parameters, times)."""
    flow_name, _, dep_name = deployment.partition("/")
    dep = api_call("GET", f"{api_url}/deployments/name/{flow_name}/{dep_name}").json()
    body = {"flow_runs": {"deployment_id": {"any_": [dep["id"]]}}, "sort": "START_TIME_ASC"}
    return api_call("POST", f"{api_url}/flow_runs/filter", json=body).json()


def events_named(api_url: str, name: str, since: datetime) -> list[dict[str, Any]]:
    body = {
        "filter": {
            "event": {"name": [name]},
            "occurred": {"since": since.isoformat()},
        },
        "limit": 50,
    }
    return api_call("POST", f"{api_url}/events/filter", json=body).json().get("events", [])


def set_retrain_parameters(api_url: str, parameters: dict[str, Any]) -> None:
    """The demo's budgets for the deployed retrain (what `prefect deploy` set, overridden)."""
    dep = api_call("GET", f"{api_url}/deployments/name/retrain/retrain").json()
    merged = {**dep.get("parameters", {}), **parameters}
    api_call("PATCH", f"{api_url}/deployments/{dep['id']}", json={"parameters": merged})


def wait_for(predicate, timeout_s: float, every_s: float = 0.5, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    raise TimeoutError(f"gave up waiting for {what} after {timeout_s:.0f}s")


# --- the run -----------------------------------------------------------------------------


def _fresh_home(home: Path) -> Path:
    """Reset the demo's own state directory (only one that a demo created)."""
    home = home.expanduser().resolve()
    if home.exists():
        if not (home / DEMO_MARKER).exists():
            raise RuntimeError(f"{home} exists and was not made by the demo; choose --home")
        shutil.rmtree(home)
    home.mkdir(parents=True)
    (home / DEMO_MARKER).write_text("state of `driftloop demo`; safe to delete\n")
    return home


def run_demo(config: DemoConfig, console: Console | None = None) -> dict[str, Any]:
    """Run the loop; returns the summary (also rendered as a table)."""
    import os

    from driftloop.commands.serving import serve_command
    from driftloop.stack import LocalStack, StackConfig, free_port
    from schemas import load_dataset
    from tasks import registry
    from tasks.settings import Settings

    config = config.budgets()
    console = console or Console(stderr=True)
    home = _fresh_home(config.home)
    settings = Settings(home=home)
    os.environ.update(settings.library_env())
    os.environ["DRIFTLOOP_HOME"] = str(home)
    dataset = load_dataset(config.dataset)
    timeline = Timeline(console)
    stack = LocalStack(settings, StackConfig(poll_s=config.poll_s, ui=True))
    summary: dict[str, Any] = {"home": str(home), "scenario": config.scenario}
    try:
        with timeline.stage("prepare data") as note:
            data = prepare_data(config, dataset, home)
            note["detail"] = f"{data.calm.height} calm + {sum(d.height for d in data.drifted)}"
            note["detail"] += f" drifted + {data.after.height} after-swap records"
        with timeline.stage("start Prefect server, work pool, deployments, worker") as note:
            stack.up()
            api = stack.api_url
            note["detail"] = f"API {api}"
            set_retrain_parameters(api, _retrain_parameters(config))
        summary["prefect_ui"] = api.removesuffix("/api")
        with prefect_api(api):
            with timeline.stage("ingest + train the first champion") as note:
                from flows.train import TrainConfig, train

                first = train(TrainConfig(
                    dataset=dataset.name, data=str(data.reference), trials=config.trials,
                    seed=config.seed, alias="champion", reason="demo: first champion",
                ))  # fmt: skip
                champion_before = first["model_tag"]
                note["detail"] = f"{champion_before}, test AUC {first['metrics']['roc_auc']:.3f}"
            port = free_port()
            with timeline.stage("build and start the BentoML service") as note:
                argv, env = serve_command(port, dataset.name)
                stack.start_service("bentoml", argv, health_url=f"http://127.0.0.1:{port}/readyz")
                note["detail"] = f"http://127.0.0.1:{port}"
            summary["service"] = f"http://127.0.0.1:{port}"
            client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
            monitor_runs = []
            with timeline.stage("replay in-distribution traffic, monitor") as note:
                calm = replay(client, data.calm, dataset, config.batch)
                wait_logged(calm)
                report = _monitor(dataset.name, calm)
                monitor_runs.append(report)
                note["detail"] = _monitor_note(report)
            drift_onset = datetime.now(UTC)
            drifted: list[Replay] = []
            pending = calm  # labels arrive one window late, as delayed ground truth does
            for i, window in enumerate(data.drifted, start=1):
                with timeline.stage(f"replay drifted window {i} + late labels, monitor") as note:
                    drifted.append(replay(client, window, dataset, config.batch))
                    send_labels(client, pending)
                    pending = drifted[-1]
                    wait_logged(drifted[-1])
                    report = _monitor(dataset.name, drifted[-1])
                    monitor_runs.append(report)
                    note["detail"] = _monitor_note(report)
                if report.get("events"):
                    break
            send_labels(client, pending)
            fired = [e for r in monitor_runs for e in r.get("events", [])]
            detected_at = datetime.now(UTC)
            with timeline.stage("automation: retrain flow run, gate") as note:
                run = wait_for(
                    lambda: _finished(flow_runs(api, "retrain/retrain")),
                    config.timeout_s, what="the triggered retrain to finish",
                )  # fmt: skip
                note["detail"] = f"retrain run {run['name']}: {run['state_type']}"
                outcome = wait_for(  # the gate's event, as the Prefect API records it
                    lambda: events_named(api, "driftloop.model.promoted", drift_onset)
                    or events_named(api, "driftloop.model.rejected", drift_onset),
                    60, what="the gate's promoted/rejected event",
                )  # fmt: skip
            champion_after = registry.get_alias(dataset.name, "champion", settings)
            promoted = champion_after != champion_before
            swap_at = None
            with timeline.stage("service serving the new champion" if promoted else
                                "champion kept: service unchanged") as note:  # fmt: skip
                if promoted:
                    served = wait_for(
                        lambda: (m := client.post("/models", json={}).json()).get("champion")
                        == champion_after and m, 30, what="the service to swap",
                    )  # fmt: skip
                    # the service's own record of when it began serving the new champion
                    since = served.get("champion_since")
                    swap_at = datetime.fromisoformat(since) if since else datetime.now(UTC)
                after = replay(client, data.after, dataset, config.batch)
                note["detail"] = f"answers from {sorted(set(after.tags))}"
        summary.update(
            _summary(config, api, champion_before, champion_after, drifted, after, run,
                     fired, outcome, drift_onset, detected_at, swap_at, monitor_runs, settings,
                     timeline)
        )  # fmt: skip
        render_summary(summary, console)
        return summary
    finally:
        if config.keep:
            console.print(f"[yellow]--keep[/]: still running; stop with "
                          f"`DRIFTLOOP_HOME={home} driftloop stack down`")  # fmt: skip
        else:
            stack.down()


def _retrain_parameters(config: DemoConfig) -> dict[str, Any]:
    return {
        "config": {
            "dataset": config.dataset,
            "strategy": "sliding_window",
            "window_rows": 1500,
            "trials": config.retrain_trials,
            "holdout_fraction": 0.3,
            "seed": config.seed,
        }
    }


def _monitor(name: str, phase: Replay) -> dict[str, Any]:
    from flows.monitor import MonitorConfig, monitor
    from tasks.drift import DriftConfig

    until = datetime.now(UTC)
    config = MonitorConfig(
        dataset=name,
        until=until,
        window_minutes=(until - phase.started).total_seconds() / 60,
        drift=DriftConfig(min_window_rows=200, hysteresis_windows=2, cooldown_minutes=60),
    )
    return monitor(config)


def _monitor_note(report: dict[str, Any]) -> str:
    d = report.get("drift") or {}
    drifted = ", ".join(d.get("drifted_features", [])[:4]) or "none"
    events = ", ".join(e["event"] for e in report.get("events", [])) or "no event"
    return (
        f"{report['window']['rows']} rows, drift score {d.get('score', 0):.2f} "
        f"(threshold {d.get('threshold')}), drifted: {drifted}; "
        f"{report['decision']['action']}; {events}"
    )


def _finished(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    triggered = [r for r in runs if r.get("state_type") in ("COMPLETED", "FAILED", "CRASHED")]
    return triggered[0] if triggered else None


def _summary(config, api, before, after_tag, drifted, after, run, fired, outcome, onset,
             detected, swap_at, monitor_runs, settings, timeline) -> dict[str, Any]:  # fmt: skip
    from tasks import registry

    before_auc = auc(
        np.concatenate([d.labels for d in drifted]), np.concatenate([d.scores for d in drifted])
    )
    start = run.get("start_time")
    retrain_start = datetime.fromisoformat(start) if start else None
    last_report = monitor_runs[-1]
    card = registry.model_path(after_tag, settings) / registry.CARD_FILE
    wandb_runs = sorted((settings.wandb_dir).glob("**/offline-run-*"))
    return {
        "champion_before": before,
        "champion_after": after_tag,
        "promoted": after_tag != before,
        "retrain_run": {
            "id": run["id"],
            "name": run["name"],
            "state": run["state_type"],
            "parameters": run.get("parameters", {}),
        },  # fmt: skip
        "events": fired,
        "gate_event": {"event": outcome[0]["event"], "payload": outcome[0]["payload"]},
        "auc_drifted_before_swap": before_auc,
        "auc_drifted_after_swap": auc(after.labels, after.scores),
        "after_swap_model_tags": sorted(set(after.tags)),
        "failed_requests": sum(d.failures for d in drifted) + after.failures,
        "rejected_requests": sum(d.rejected for d in drifted) + after.rejected,
        "seconds_drift_onset_to_detection": (detected - onset).total_seconds(),
        "seconds_event_to_retrain_start": (
            (retrain_start - detected).total_seconds() if retrain_start else None
        ),
        "seconds_retrain_start_to_new_model_serving": (
            (swap_at - retrain_start).total_seconds() if swap_at and retrain_start else None
        ),
        "stages": [
            {"stage": n, "seconds": round(s, 2), "detail": d} for n, s, d in timeline.stages
        ],  # fmt: skip
        "total_seconds": round(time.monotonic() - timeline.t0, 1),
        "prefect_ui": api.removesuffix("/api"),
        "drift_report": (last_report.get("report") or {}).get("html"),
        "model_card": str(card),
        "wandb_runs": [str(p) for p in wandb_runs],
        "wandb_sync": f"wandb sync {settings.wandb_dir}/wandb/offline-run-*",
    }


def render_summary(summary: dict[str, Any], console: Console) -> None:
    table = Table(title="driftloop demo: the loop, closed", show_header=False)
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    rows = [
        ("champion before", summary["champion_before"]),
        ("champion after", summary["champion_after"]),
        ("decision", "promoted" if summary["promoted"] else "rejected: champion kept"),
        ("gate", summary["gate_event"]["payload"].get("reason", "")),
        ("AUC on drifted traffic, before swap", summary["auc_drifted_before_swap"]),
        ("AUC on drifted traffic, after swap", summary["auc_drifted_after_swap"]),
        ("drift onset → detection (s)", summary["seconds_drift_onset_to_detection"]),
        ("event → retrain start (s)", summary["seconds_event_to_retrain_start"]),
        (
            "retrain start → new model serving (s)",
            summary["seconds_retrain_start_to_new_model_serving"],
        ),  # fmt: skip
        ("failed requests", summary["failed_requests"]),
        ("total (s)", summary["total_seconds"]),
    ]
    for k, v in rows:
        table.add_row(k, fmt(v) if v is not None else "—")
    console.print(table)
    stages = Table(title="timeline")
    stages.add_column("stage")
    stages.add_column("seconds", justify="right")
    for s in summary["stages"]:
        stages.add_row(s["stage"], f"{s['seconds']:.1f}")
    console.print(stages)
    console.print(f"Prefect UI:   {summary['prefect_ui']}")
    console.print(f"drift report: {summary['drift_report']}")
    console.print(f"model card:   {summary['model_card']}")
    console.print(f"W&B offline:  {summary['wandb_sync']}")
