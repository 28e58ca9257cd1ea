"""The closed loop on real data, against real local servers, narrated.

Stages: start the local stack (Prefect server on SQLite, process work pool, deployments from
prefect.yaml, a worker) -> ingest + train the first champion on part of the data -> start
``bentoml serve`` -> replay the rest as traffic, first in-distribution, then drifted, with
delayed labels through ``/feedback`` -> monitor windows -> the drift event fires -> the Prefect
automation starts the retrain deployment -> the gate promotes (or rejects) -> the service
swaps by itself. Everything is measured from the outside: the Prefect API, the registry, HTTP.
"""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx
import numpy as np
from pydantic import BaseModel
from rich.console import Console

from driftloop.narrate import Timeline, monitor_note, render_summary
from driftloop.prefect_api import (
    events_named,
    flow_runs,
    set_deployment_parameters,
    set_serving_url,
    use_api,
)
from driftloop.supervise import wait_for
from driftloop.traffic import Replay, auc, prepare_data, replay, send_labels, wait_logged

if TYPE_CHECKING:
    from tasks.settings import Settings

REPO = Path(__file__).resolve().parents[1]
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
    notify_url: str | None = None  # webhook for prefect.yaml's notifications

    def budgets(self) -> DemoConfig:
        if not self.fast:
            return self
        return self.model_copy(update={"trials": 8, "retrain_trials": 6})


def _fresh_home(home: Path) -> Settings:
    """Reset the demo's own state directory (only one that a demo created)."""
    from tasks.settings import Settings

    settings = Settings(home=home)
    if settings.root.exists():
        if not settings.demo_marker.exists():
            raise RuntimeError(
                f"{settings.root} exists and was not made by the demo; choose --home"
            )
        shutil.rmtree(settings.root)
    settings.root.mkdir(parents=True)
    settings.demo_marker.write_text("state of `driftloop demo`; safe to delete\n")
    return settings


def run_demo(config: DemoConfig, console: Console | None = None) -> dict[str, Any]:
    """Run the loop; returns the summary (also rendered as a table)."""
    import os

    from driftloop.commands.serving import serve_command
    from driftloop.stack import LocalStack, StackConfig
    from driftloop.supervise import free_port
    from schemas import load_dataset
    from tasks import registry

    config = config.budgets()
    console = console or Console(stderr=True)
    settings = _fresh_home(config.home)
    home = settings.root
    os.environ.update(settings.library_env())
    os.environ["DRIFTLOOP_HOME"] = str(home)
    dataset = load_dataset(config.dataset)
    timeline = Timeline(console)
    stack = LocalStack(
        settings, StackConfig(poll_s=config.poll_s, ui=True, notify_url=config.notify_url)
    )
    summary: dict[str, Any] = {"home": str(home), "scenario": config.scenario}
    try:
        with timeline.stage("prepare data") as note:
            data = prepare_data(config, dataset, settings.demo_reference)
            note["detail"] = f"{data.calm.height} calm + {sum(d.height for d in data.drifted)}"
            note["detail"] += f" drifted + {data.after.height} after-swap records"
        with timeline.stage("start Prefect server, work pool, deployments, worker") as note:
            stack.up()
            api = stack.api_url
            note["detail"] = f"API {api}"
            set_deployment_parameters(api, _retrain_parameters(config))
        summary["prefect_ui"] = api.removesuffix("/api")
        with use_api(api):
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
                set_serving_url(api, f"http://127.0.0.1:{port}")  # the deployed monitor's too
            summary["service"] = f"http://127.0.0.1:{port}"
            client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
            monitor_runs = []
            with timeline.stage("replay in-distribution traffic, monitor") as note:
                calm = replay(client, data.calm, dataset, config.batch)
                wait_logged(calm)
                report = _monitor(dataset.name, calm, summary["service"])
                monitor_runs.append(report)
                note["detail"] = monitor_note(report)
            drift_onset = datetime.now(UTC)
            drifted: list[Replay] = []
            pending = calm  # labels arrive one window late, as delayed ground truth does
            for i, window in enumerate(data.drifted, start=1):
                with timeline.stage(f"replay drifted window {i} + late labels, monitor") as note:
                    drifted.append(replay(client, window, dataset, config.batch))
                    send_labels(client, pending)
                    pending = drifted[-1]
                    wait_logged(drifted[-1])
                    report = _monitor(dataset.name, drifted[-1], summary["service"])
                    monitor_runs.append(report)
                    note["detail"] = monitor_note(report)
                if _asks_for_retrain(report):
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


def _monitor(name: str, phase: Replay, serving_url: str) -> dict[str, Any]:
    from flows.monitor import MonitorConfig, monitor
    from tasks.drift import DriftConfig

    until = datetime.now(UTC)
    config = MonitorConfig(
        dataset=name,
        until=until,
        window_minutes=(until - phase.started).total_seconds() / 60,
        drift=DriftConfig(min_window_rows=200, hysteresis_windows=2, cooldown_minutes=60),
        serving_url=serving_url,
    )
    return monitor(config)


def _asks_for_retrain(report: dict[str, Any]) -> bool:
    """An event of this run starts the retrain (a drift the policy only reports does not)."""
    return any(e["event"] in ("drift_detected", "performance_degraded")
               for e in report.get("events", []))  # fmt: skip


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
