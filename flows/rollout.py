"""Rollout flow: one look at the running experiment of a model: evaluate the arms from the
prediction log and the feedback labels, decide with the always-valid test and the guardrails,
then advance, promote or roll back; emit ``driftloop.rollout.*`` with the statistics as
evidence and publish the per-arm table as a Prefect artifact at every look.

Scheduled every minute (prefect.yaml, concurrency 1); without a running experiment a run only
reads the alias index and returns.
"""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from tasks.rollout import evaluate, experiment
from tasks.rollout.report import Emitter, Look, artifact_key


class RolloutRunConfig(BaseModel):
    """Which model's experiment to look at (the rollout's own settings live with it)."""

    dataset: str = "telco"


read_experiment = task(experiment.read_experiment, name="read_experiment", cache_policy=NO_CACHE)
observe_arms = task(evaluate.observe, name="observe_arms", cache_policy=NO_CACHE)
decide_look = task(evaluate.decide_look, name="decide_look", cache_policy=NO_CACHE)
apply_decision = task(experiment.apply, name="apply_decision", cache_policy=NO_CACHE, retries=2)


@flow(name="rollout")
def rollout(config: RolloutRunConfig | None = None, emitter: Emitter | None = None) -> dict:
    """Evaluate -> decide -> advance / promote / roll back; returns the look's record."""
    from tasks.settings import get_settings

    config, settings = config or RolloutRunConfig(), get_settings()
    emitter = emitter or _events()
    running = read_experiment(name=config.dataset, settings=settings)
    if running is None:
        return {"action": "idle", "model": config.dataset}
    observation = observe_arms(experiment=running, settings=settings)
    decision = decide_look(experiment=running, observation=observation)
    champion = apply_decision(
        name=config.dataset, decision=decision, experiment_id=running.id, settings=settings
    )
    look = Look(running, observation, decision, champion)
    record = look.payload()
    if look.event is not None:
        record["event_id"] = emitter.emit_rollout(look.event, config.dataset, record)
    _publish_artifacts(look)
    return record


def _events() -> Emitter:
    from tasks import events

    return events


def _publish_artifacts(look: Look) -> None:
    """The per-arm table and the summary, under stable keys (only inside a flow run)."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is None:
        return
    key = artifact_key(look.experiment.model)
    create_markdown_artifact(look.markdown(), key=key, description="driftloop rollout look")
    create_table_artifact(look.table(), key=f"{key}-arms", description="rollout: per arm")
