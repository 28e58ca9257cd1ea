"""The state of a running rollout experiment: an ``experiment`` entry per model name in the
alias index (``models/index.json``), beside ``aliases``.

It is read and written in the registry's locked, atomic rewrite of the index, so a serving
worker reads the champion, the challenger and the split of one moment. Every transition is one
write: a start points the challenger alias and opens the experiment; a look records the
evidence (and a new share when the ramp advances); the end (promote, roll back, abort, no
decision) moves the aliases and removes the entry together, so a rollback puts all traffic back
on the champion at the workers' next poll, with no intermediate state to serve.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from tasks import registry
from tasks.rollout.config import RolloutConfig, RolloutMode
from tasks.rollout.decision import Evidence, RolloutDecision
from tasks.rollout.routing import EXPERIMENT
from tasks.settings import Settings, get_settings

Outcome = Literal["promote", "rollback", "no_decision", "abort"]
_OUTCOMES: dict[str, Outcome] = {"promote": "promote", "rollback": "rollback",
                                 "no_decision": "no_decision"}  # fmt: skip


class ExperimentError(registry.RegistryError):
    """A rollout cannot start or move (one is running, none is, or it changed meanwhile)."""


class Experiment(BaseModel):
    """One challenger's way to traffic, as the index keeps it (JSON-safe)."""

    id: str
    model: str
    mode: RolloutMode
    champion: str
    challenger: str
    salt: str = Field(description="routing key: a new experiment reshuffles who is exposed")
    share: float = Field(ge=0, le=1, description="challenger's traffic share (0 in shadow mode)")
    started_at: datetime
    step_started_at: datetime
    looks: int = 0
    config: RolloutConfig
    previous: Evidence | None = Field(None, description="the last look's evidence (carried)")
    last_action: str | None = None
    last_reason: str | None = None


def _now() -> datetime:
    return datetime.now(UTC)


def read_experiment(name: str, settings: Settings | None = None) -> Experiment | None:
    """The running experiment of model ``name``, or ``None``."""
    raw = registry.read_index(settings).get(name, {}).get(EXPERIMENT)
    return Experiment.model_validate(raw) if raw else None


def _store(entry: dict[str, Any], experiment: Experiment | None) -> None:
    if experiment is None:
        entry.pop(EXPERIMENT, None)
    else:
        entry[EXPERIMENT] = experiment.model_dump(mode="json")


def _running(entry: dict[str, Any], name: str, experiment_id: str | None) -> Experiment:
    raw = entry.get(EXPERIMENT)
    if not raw:
        raise ExperimentError(f"model {name!r} has no rollout running")
    current = Experiment.model_validate(raw)
    if experiment_id is not None and current.id != experiment_id:
        raise ExperimentError(f"rollout {experiment_id} of {name!r} was replaced by {current.id}")
    return current


def start(
    name: str,
    challenger: str,
    config: RolloutConfig,
    *,
    reason: str = "",
    settings: Settings | None = None,
) -> Experiment:
    """Point the challenger alias at ``challenger`` and open a shadow or canary experiment
    (canary: at the ramp's first share) in one index write."""
    settings = settings or get_settings()
    if config.mode == "direct":
        raise ExperimentError("direct mode promotes at once: there is no experiment to run")
    challenger = registry.resolve(challenger, settings)
    registry.verify_files(Path(registry.model_path(challenger, settings)))
    now = _now()
    with registry.edit_entry(name, settings) as entry:
        champion = entry["aliases"].get(registry.CHAMPION)
        if champion is None:
            raise ExperimentError(f"model {name!r} has no champion to compare against")
        if champion == challenger:
            raise ExperimentError(f"{challenger} is already the champion")
        if entry.get(EXPERIMENT):
            raise ExperimentError(f"model {name!r} already has rollout {entry[EXPERIMENT]['id']}")
        ident = uuid.uuid4().hex[:12]
        experiment = Experiment(
            id=ident, model=name, mode=config.mode, champion=champion, challenger=challenger,
            salt=f"{name}/{ident}", share=config.ramp[0] if config.mode == "canary" else 0.0,
            started_at=now, step_started_at=now, config=config,
        )  # fmt: skip
        old = entry["aliases"].get(registry.CHALLENGER)
        entry["aliases"][registry.CHALLENGER] = challenger
        registry.record_move(
            entry, registry.CHALLENGER, old, challenger, f"rollout {ident}: {reason}"
        )
        registry.record_move(entry, EXPERIMENT, None, ident, f"{config.mode} started: {reason}")
        _store(entry, experiment)
    return experiment


def record_look(
    name: str, decision: RolloutDecision, *, experiment_id: str, settings: Settings | None = None
) -> Experiment:
    """Keep a look that continues or advances: its evidence, and the new share (a new step)."""
    if decision.action not in ("continue", "advance"):
        raise ValueError(f"{decision.action!r} ends the experiment: use finish()")
    settings = settings or get_settings()
    with registry.edit_entry(name, settings) as entry:
        current = _running(entry, name, experiment_id)
        changes: dict[str, Any] = {
            "looks": current.looks + 1, "previous": decision.evidence,
            "last_action": decision.action, "last_reason": decision.reason,
        }  # fmt: skip
        if decision.action == "advance" and current.mode == "canary":
            changes |= {"share": decision.share, "step_started_at": _now()}
            registry.record_move(entry, EXPERIMENT, str(current.share), str(decision.share),
                             f"rollout {current.id} advanced: {decision.reason}")  # fmt: skip
        updated = current.model_copy(update=changes)
        _store(entry, updated)
    return updated


def finish(
    name: str,
    outcome: Outcome,
    *,
    reason: str,
    experiment_id: str | None = None,
    settings: Settings | None = None,
) -> str:
    """End the experiment in one write: ``promote`` makes the challenger champion; any other
    outcome clears the challenger alias, so the champion answers everything. Returns the
    champion's tag afterwards."""
    settings = settings or get_settings()
    with registry.edit_entry(name, settings) as entry:
        current = _running(entry, name, experiment_id)
        why = f"rollout {current.id} {outcome}: {reason}"
        if outcome == "promote":
            registry.verify_files(Path(registry.model_path(current.challenger, settings)))
            registry.move_champion(entry, current.challenger, why)
        if entry["aliases"].get(registry.CHALLENGER) == current.challenger:
            entry["aliases"].pop(registry.CHALLENGER)
            registry.record_move(entry, registry.CHALLENGER, current.challenger, None, why)
        registry.record_move(entry, EXPERIMENT, current.id, None, why)
        _store(entry, None)
        return entry["aliases"][registry.CHAMPION]


def apply(
    name: str, decision: RolloutDecision, *, experiment_id: str, settings: Settings | None = None
) -> str:
    """Act on a look's decision: keep it (continue, advance) or end the experiment. Returns the
    champion's tag afterwards."""
    if decision.action in ("continue", "advance"):
        return record_look(name, decision, experiment_id=experiment_id, settings=settings).champion
    return finish(
        name, _OUTCOMES[decision.action], reason=decision.reason, experiment_id=experiment_id,
        settings=settings,
    )  # fmt: skip
