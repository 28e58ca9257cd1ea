"""From the prediction log and the feedback labels to the inputs of the rollout decision.

Canary: each logged row carries the ``arm`` that the router chose and the ``model_tag`` that
answered; the arms are independent samples (two-sample test). A row routed to the challenger
but answered by another model (the challenger failed, the champion stepped in) is a challenger
error. Shadow: the champion answered every row and the challenger's score is logged beside it
(``shadow_tag``, ``shadow_score``), so both losses are on the same labelled rows (paired test);
a row the challenger should have scored but did not is a challenger error.

Only rows logged since the experiment started, by its two models, count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from tasks.rollout.decision import ArmStatistics, RolloutDecision, decide
from tasks.rollout.guardrails import P99, GuardrailObservation, observe_guardrails
from tasks.rollout.losses import per_row_loss

if TYPE_CHECKING:
    from tasks.rollout.experiment import Experiment
    from tasks.settings import Settings

CHAMPION_ARM, CHALLENGER_ARM = "champion", "challenger"


@dataclass(frozen=True)
class ArmSummary:
    """One arm's row of the rollout table."""

    arm: str
    model_tag: str
    requests: int
    labelled: int
    mean_loss: float | None
    error_rate: float
    p99_latency_ms: float | None
    mean_score: float | None


@dataclass(frozen=True)
class Observation:
    """Everything one look of the rollout flow decides on."""

    stats: ArmStatistics
    guardrails: GuardrailObservation
    step_labels: int  # the challenger's labelled rows since the current step began
    arms: tuple[ArmSummary, ArmSummary]  # champion, challenger


def _mean(x: np.ndarray) -> float | None:
    return float(x.mean()) if len(x) else None


def _p99(x: np.ndarray) -> float | None:
    return float(np.percentile(x, P99)) if len(x) else None


@dataclass(frozen=True)
class _Arm:
    """Per-request arrays of one arm and the per-row losses of its labelled rows."""

    tag: str
    errors: np.ndarray
    latency: np.ndarray
    scores: np.ndarray
    losses: np.ndarray

    def summary(self, arm: str) -> ArmSummary:
        return ArmSummary(
            arm=arm, model_tag=self.tag, requests=len(self.errors), labelled=len(self.losses),
            mean_loss=_mean(self.losses), error_rate=_mean(self.errors.astype(float)) or 0.0,
            p99_latency_ms=_p99(self.latency), mean_score=_mean(self.scores),
        )  # fmt: skip


def _arr(frame: pl.DataFrame, column: str) -> np.ndarray:
    return frame[column].to_numpy().astype(np.float64)


def _with_arm(frame: pl.DataFrame) -> pl.DataFrame:
    """Logs written before arms existed answered with the champion only."""
    if "arm" in frame.columns:
        return frame.with_columns(pl.col("arm").fill_null(CHAMPION_ARM))
    return frame.with_columns(arm=pl.lit(CHAMPION_ARM))


def _canary(experiment: Experiment, rows: pl.DataFrame, labelled: pl.DataFrame) -> tuple:
    metric = experiment.config.metric
    arms = []
    for arm, tag in ((CHAMPION_ARM, experiment.champion), (CHALLENGER_ARM, experiment.challenger)):
        routed = rows.filter(pl.col("arm") == arm)
        ok = (pl.col("model_tag") == tag) & pl.col("score").is_finite()
        answered = routed.filter(ok)
        scored = labelled.filter((pl.col("arm") == arm) & ok)
        losses = per_row_loss(metric, _arr(scored, "label"), _arr(scored, "score"))
        errors = ~routed.select(ok.fill_null(False)).to_series().to_numpy()
        arms.append(_Arm(tag, errors, _arr(answered, "latency_ms"), _arr(answered, "score"),
                         losses))  # fmt: skip
    step = labelled.filter(
        (pl.col("arm") == CHALLENGER_ARM)
        & (pl.col("model_tag") == experiment.challenger)
        & (pl.col("ts") >= experiment.step_started_at)
    )
    stats = ArmStatistics.from_losses(arms[0].losses, arms[1].losses, paired=False)
    return arms, stats, step.height


def _shadow(experiment: Experiment, rows: pl.DataFrame, labelled: pl.DataFrame) -> tuple:
    metric = experiment.config.metric
    mine = (pl.col("model_tag") == experiment.champion) & (
        pl.col("shadow_tag") == experiment.challenger
    )
    rows, labelled = rows.filter(mine), labelled.filter(mine)
    shadowed = pl.col("shadow_score").is_finite().fill_null(False)
    both = labelled.filter(shadowed & pl.col("score").is_finite())
    champion = per_row_loss(metric, _arr(both, "label"), _arr(both, "score"))
    challenger = per_row_loss(metric, _arr(both, "label"), _arr(both, "shadow_score"))
    errors = ~rows.select(shadowed).to_series().to_numpy()
    latency = _arr(rows, "latency_ms")  # the shadow scores off the request path: no latency
    answered = rows.filter(shadowed)
    arms = [
        _Arm(experiment.champion, np.zeros(rows.height, bool), latency, _arr(rows, "score"),
             champion),
        _Arm(experiment.challenger, errors, latency, _arr(answered, "shadow_score"), challenger),
    ]  # fmt: skip
    stats = ArmStatistics.from_losses(champion, challenger, paired=True)
    return arms, stats, both.height


def evaluate(
    experiment: Experiment, predictions: pl.DataFrame, feedback: pl.DataFrame
) -> Observation:
    """Per-arm losses, error rates, latencies and scores of the experiment's logged rows."""
    from tasks.predlog import join_feedback

    since = experiment.started_at
    rows = _with_arm(predictions.filter(pl.col("ts") >= since))
    labelled = join_feedback(rows, feedback)
    measure = _shadow if experiment.mode == "shadow" else _canary
    arms, stats, step_labels = measure(experiment, rows, labelled)
    guardrails = observe_guardrails(
        errors_champion=arms[0].errors, errors_challenger=arms[1].errors,
        latency_champion=arms[0].latency, latency_challenger=arms[1].latency,
        scores_champion=arms[0].scores, scores_challenger=arms[1].scores,
    )  # fmt: skip
    summaries = (arms[0].summary(CHAMPION_ARM), arms[1].summary(CHALLENGER_ARM))
    return Observation(stats, guardrails, step_labels, summaries)


def observe(experiment: Experiment, settings: Settings | None = None) -> Observation:
    """:func:`evaluate` on the logs under ``settings`` since the experiment started."""
    from tasks.predlog import load_feedback, load_predictions

    predictions = load_predictions(since=experiment.started_at, settings=settings)
    return evaluate(experiment, predictions, load_feedback(settings=settings))


def decide_look(experiment: Experiment, observation: Observation) -> RolloutDecision:
    """The decision at this look, carrying the experiment's earlier evidence."""
    return decide(
        observation.stats, observation.guardrails, experiment.config, share=experiment.share,
        step_labels=observation.step_labels, previous=experiment.previous,
    )  # fmt: skip
