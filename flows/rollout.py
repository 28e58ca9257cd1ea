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

from tasks.rollout import evaluate, experiment, report
from tasks.settings import get_settings


class RolloutRunConfig(BaseModel):
    """Which model's experiment to look at (the rollout's own settings live with it)."""

    dataset: str = "telco"


read_experiment = task(experiment.read_experiment, name="read_experiment", cache_policy=NO_CACHE)
observe_arms = task(evaluate.observe, name="observe_arms", cache_policy=NO_CACHE)
decide_look = task(evaluate.decide_look, name="decide_look", cache_policy=NO_CACHE)
apply_decision = task(experiment.apply, name="apply_decision", cache_policy=NO_CACHE, retries=2)
emit_look = task(report.emit_look, name="emit_look", cache_policy=NO_CACHE)


@flow(name="rollout")
def rollout(config: RolloutRunConfig | None = None) -> dict:
    """Evaluate -> decide -> advance / promote / roll back -> event + artifact."""
    config, settings = config or RolloutRunConfig(), get_settings()
    running = read_experiment(name=config.dataset, settings=settings)
    if running is None:
        return {"action": "idle", "model": config.dataset}
    observation = observe_arms(experiment=running, settings=settings)
    decision = decide_look(experiment=running, observation=observation)
    champion = apply_decision(
        name=config.dataset, decision=decision, experiment_id=running.id, settings=settings
    )
    look = report.Look(running, observation, decision, champion)
    record = emit_look(look=look)
    report.publish_artifacts(look)
    return record
