"""Experiment state in the alias index: start, looks, the end in one write, stale writers."""

from __future__ import annotations

import numpy as np
import pytest

from tasks import registry
from tasks.rollout import experiment
from tasks.rollout.config import RolloutConfig
from tasks.rollout.decision import ArmStatistics, decide
from tasks.rollout.guardrails import GuardrailObservation
from tasks.rollout.routing import split_of
from tests.support.models import save_toy_pair

CANARY = RolloutConfig(mode="canary", ramp=(0.1, 0.5, 1.0), min_labels=100)
CLEAN = GuardrailObservation(5_000, 5_000, 0.0, 1.0, 0.02)


@pytest.fixture
def models(home) -> tuple[str, str]:
    return save_toy_pair("toy")


def _decision(shift: float, share: float, config: RolloutConfig = CANARY):
    rng = np.random.default_rng(0)
    stats = ArmStatistics.from_losses(
        rng.exponential(0.5, 2_000), rng.exponential(0.5, 2_000) + shift, paired=False
    )
    return decide(stats, CLEAN, config, share=share, step_labels=2_000)


def test_start_opens_the_experiment_and_points_the_challenger_in_one_write(models) -> None:
    a, b = models
    started = experiment.start("toy", b, CANARY, reason="test")
    entry = registry.read_index()["toy"]
    assert entry["aliases"] == {"champion": a, "challenger": b}
    assert experiment.read_experiment("toy") == started
    split = split_of(entry)
    assert (split.challenger, split.share, split.mode) == (b, 0.1, "canary")
    assert split.salt == started.salt and started.champion == a
    with pytest.raises(experiment.ExperimentError, match="already has rollout"):
        experiment.start("toy", b, CANARY)


def test_start_refuses_direct_mode_the_champion_and_unknown_models(models) -> None:
    a, b = models
    with pytest.raises(experiment.ExperimentError, match="direct"):
        experiment.start("toy", b, RolloutConfig())
    with pytest.raises(experiment.ExperimentError, match="already the champion"):
        experiment.start("toy", a, CANARY)
    with pytest.raises(registry.RegistryError):
        experiment.start("toy", "toy:nope", CANARY)
    assert experiment.read_experiment("toy") is None


def test_shadow_starts_at_share_zero(models) -> None:
    _, b = models
    started = experiment.start("toy", b, RolloutConfig(mode="shadow"))
    assert started.share == 0.0 and split_of(registry.read_index()["toy"]).share == 0


def test_a_look_keeps_the_evidence_and_an_advance_starts_a_step(models) -> None:
    _, b = models
    started = experiment.start("toy", b, CANARY)
    cont = _decision(0.0, 0.1, CANARY.model_copy(update={"min_labels": 5_000}))
    assert cont.action == "continue"
    kept = experiment.record_look("toy", cont, experiment_id=started.id)
    assert kept.looks == 1 and kept.share == 0.1 and kept.previous == cont.evidence
    assert kept.step_started_at == started.step_started_at
    adv = _decision(-0.1, 0.1)
    assert adv.action == "advance"
    moved = experiment.apply("toy", adv, experiment_id=started.id)
    assert moved == started.champion
    now = experiment.read_experiment("toy")
    assert now.share == 0.5 and now.step_started_at > started.step_started_at
    assert now.previous == adv.evidence and now.last_action == "advance"


def test_promote_moves_the_champion_and_ends_the_experiment_together(models) -> None:
    a, b = models
    started = experiment.start("toy", b, CANARY)
    promote = _decision(-0.1, 0.5)
    assert promote.action == "promote"
    assert experiment.apply("toy", promote, experiment_id=started.id) == b
    entry = registry.read_index()["toy"]
    assert entry["aliases"] == {"champion": b} and "experiment" not in entry
    assert split_of(entry) is None
    assert registry.rollback("toy") == a  # the champion stack knows the promotion


@pytest.mark.parametrize("outcome", ["rollback", "abort", "no_decision"])
def test_any_other_end_clears_the_challenger_and_keeps_the_champion(models, outcome) -> None:
    a, b = models
    started = experiment.start("toy", b, CANARY)
    assert experiment.finish("toy", outcome, reason="x", experiment_id=started.id) == a
    entry = registry.read_index()["toy"]
    assert entry["aliases"] == {"champion": a} and "experiment" not in entry
    ends = [h for h in entry["history"] if h["alias"] == "experiment"]
    assert [h["to"] for h in ends] == [started.id, None] and outcome in ends[-1]["reason"]


def test_a_stale_look_cannot_touch_a_newer_experiment(models) -> None:
    _, b = models
    first = experiment.start("toy", b, CANARY)
    experiment.finish("toy", "abort", reason="x")
    second = experiment.start("toy", b, CANARY)
    with pytest.raises(experiment.ExperimentError, match="replaced"):
        experiment.apply("toy", _decision(0.2, 0.1), experiment_id=first.id)
    assert experiment.read_experiment("toy") == second
    experiment.finish("toy", "abort", reason="x")
    with pytest.raises(experiment.ExperimentError, match="no rollout"):
        experiment.finish("toy", "abort", reason="x")
