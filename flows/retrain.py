"""Retrain flow: reference data + recent labeled feedback -> challenger -> gate vs champion on
the newest labeled rows -> promote or reject -> driftloop.model.promoted / .rejected; or, with
``rollout.mode`` shadow or canary, hand the winner to a rollout (driftloop.rollout.started) that
the rollout flow decides online.

Triggered by driftloop.drift.detected / driftloop.performance.degraded (prefect.yaml), weekly,
or by hand (``driftloop retrain``). The service notices a promotion in the alias index itself.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from flows.train import TrainConfig, train
from schemas import load_dataset
from tasks import predlog, registry
from tasks import retrain as rt
from tasks.artifacts import retrain as artifacts
from tasks.gate import GateConfig, run_gate
from tasks.ingest.snapshot import load_snapshot
from tasks.retrain import Strategy
from tasks.rollout.config import RolloutConfig
from tasks.rollout.experiment import read_experiment
from tasks.settings import get_settings


class RetrainConfig(BaseModel):
    """How to retrain; deployments set it in prefect.yaml, the CLI maps flags onto it."""

    dataset: str = "telco"
    strategy: Strategy = "full_refit"
    window_rows: int | None = Field(5000, ge=1, description="sliding_window / warm_start size")
    feedback_since: datetime | None = Field(None, description="ignore older labeled feedback")
    holdout_fraction: float = Field(0.3, gt=0, lt=1)
    min_holdout_rows: int = Field(50, ge=1)
    trials: int = Field(15, ge=1, description="smaller than a full train: warm-started")
    timeout_s: float = Field(300.0, gt=0)
    seed: int = 0
    num_threads: int = Field(1, ge=1)
    min_rows: int = Field(200, ge=1)
    gate: GateConfig = Field(default_factory=GateConfig)
    rollout: RolloutConfig = Field(
        default_factory=RolloutConfig, description="how a gate winner reaches traffic"
    )

    def challenger(self, name: str, data: Path, champion: str, reason: str) -> TrainConfig:
        """The train flow's config for this retrain's challenger."""
        return TrainConfig(
            dataset=name, data=str(data), trials=self.trials, timeout_s=self.timeout_s,
            seed=self.seed, num_threads=self.num_threads, alias="challenger", warm_start=True,
            init_model=champion if self.strategy == "warm_start" else None,
            min_rows=self.min_rows, reason=f"retrain: {reason}",
        )  # fmt: skip


class RetrainTrigger(BaseModel):
    """Why this retrain runs; templated from the event by the deployment trigger."""

    reason: str = "manual"
    event: str | None = None
    event_id: str | None = None
    model: str | None = Field(None, description="model (= dataset) name from the event")
    evidence: dict[str, Any] = Field(default_factory=dict)


load_labeled_feedback = task(
    predlog.join_feedback, name="load_labeled_feedback", cache_policy=NO_CACHE
)
apply_gate_decision = task(
    rt.apply_decision, name="apply_gate_decision", cache_policy=NO_CACHE, retries=2
)


@flow(name="retrain")
def retrain(config: RetrainConfig | None = None, trigger: RetrainTrigger | None = None) -> dict:
    """Assemble data, train a challenger, gate it against the champion, promote or reject."""
    config, trigger = config or RetrainConfig(), trigger or RetrainTrigger()
    settings, stamp = get_settings().ensure_dirs(), rt.run_stamp()
    dataset = load_dataset(trigger.model or config.dataset)
    champion = registry.load_model(f"{dataset.name}:champion", settings)
    joined = load_labeled_feedback(settings=settings)
    labeled = rt.labeled_feedback(joined, dataset, since=config.feedback_since)
    running = read_experiment(dataset.name, settings)
    if why := rt.skip_reason(evidence=trigger.evidence, labeled=labeled, holdout=config,
                             experiment=running):  # fmt: skip
        return rt.skipped(dataset.name, reason=why, trigger=trigger.model_dump())
    recent = rt.split_holdout(
        labeled, fraction=config.holdout_fraction, min_rows=config.min_holdout_rows
    )
    reference = rt.reference_rows(load_snapshot(champion.metadata["data_version"], settings),
                                  dataset)  # fmt: skip
    data = rt.assemble(
        reference, recent.train, recent.holdout, dataset,
        strategy=config.strategy, window_rows=config.window_rows,
    )  # fmt: skip
    path = rt.write_training_file(data.frame, settings, stamp)
    trained = train(config.challenger(dataset.name, path, champion.tag, trigger.reason))
    challenger = registry.load_model(trained["model_tag"], settings)
    decision = run_gate(champion, challenger, recent.holdout, dataset, config.gate)
    champion_after = apply_gate_decision(
        decision=decision, name=dataset.name, settings=settings, rollout=config.rollout
    )
    evidence = rt.gate_evidence(
        decision, trigger=trigger.model_dump(exclude={"evidence"}), data=data, recent=recent,
        champion_after=champion_after, challenger_data_version=trained.get("data_version"),
    )  # fmt: skip
    out = rt.emit_outcome(dataset.name, decision, evidence, rollout=config.rollout)
    artifacts.publish_retrain(decision=decision, trigger=trigger, outcome=out, champion=champion)
    return out
