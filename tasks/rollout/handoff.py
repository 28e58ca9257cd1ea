"""Starting and aborting a rollout, each with its event: what the CLI and the retrain flow call
(the rollout flow's looks emit their own)."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from tasks.rollout import experiment
from tasks.rollout.report import experiment_record

if TYPE_CHECKING:
    from tasks.rollout.config import RolloutConfig
    from tasks.rollout.experiment import Experiment
    from tasks.rollout.report import Emitter
    from tasks.settings import Settings


def start_rollout(
    name: str,
    challenger: str,
    config: RolloutConfig,
    *,
    reason: str,
    emitter: Emitter,
    evidence: dict[str, Any] | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Open a shadow or canary experiment for ``challenger``; emit ``rollout.started`` with the
    experiment and ``evidence`` (e.g. the offline gate's decision). Returns the payload."""
    started = experiment.start(name, challenger, config, reason=reason, settings=settings)
    return emit_started(started, reason=reason, emitter=emitter, evidence=evidence)


def emit_started(
    started: Experiment, *, reason: str, emitter: Emitter, evidence: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Emit ``rollout.started`` for an experiment just opened; returns the payload with the
    event's id."""
    payload: dict[str, Any] = {
        "reason": "started", "explanation": reason, "experiment": experiment_record(started),
        "evidence": evidence or {},
    }  # fmt: skip
    payload["event_id"] = emitter.emit_rollout("started", started.model, payload)
    return payload


def abort_rollout(
    name: str, *, reason: str, emitter: Emitter, settings: Settings | None = None
) -> dict[str, Any]:
    """End the running experiment by hand: the champion answers everything again; emits
    ``rollout.rolled_back``. Returns the payload."""
    running = experiment.read_experiment(name, settings)
    if running is None:
        raise experiment.ExperimentError(f"model {name!r} has no rollout running")
    champion = experiment.finish(
        name, "abort", reason=reason, experiment_id=running.id, settings=settings
    )
    payload: dict[str, Any] = {
        "reason": "abort", "action": "abort", "explanation": reason,
        "experiment": experiment_record(running), "share_before": running.share,
        "share_after": 0.0, "champion_after": champion,
        "evidence": asdict(running.previous) if running.previous else None,
    }  # fmt: skip
    payload["event_id"] = emitter.emit_rollout("rolled_back", name, payload)
    return payload
