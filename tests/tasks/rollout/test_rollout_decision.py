"""The rollout decision: every outcome, the guardrails, the margin, the config's checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from tasks.io import dumps
from tasks.metrics import log_loss
from tasks.rollout.config import RolloutConfig
from tasks.rollout.decision import ArmStatistics, decide
from tasks.rollout.guardrails import GuardrailObservation, check_guardrails, observe_guardrails
from tasks.rollout.losses import per_row_loss

CLEAN = GuardrailObservation(5_000, 5_000, 0.0, 1.0, 0.02)
CANARY = RolloutConfig(mode="canary")
SHADOW = RolloutConfig(mode="shadow")


def _losses(n: int, shift: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Independent arms; the challenger's mean loss is ``shift`` above the champion's."""
    rng = np.random.default_rng(seed)
    return rng.exponential(0.5, n), rng.exponential(0.5, n) + shift


def _two(shift: float, n: int = 5_000) -> ArmStatistics:
    return ArmStatistics.from_losses(*_losses(n, shift), paired=False)


def test_direct_mode_promotes() -> None:
    d = decide(_two(0.0), CLEAN, RolloutConfig(), share=0.0, step_labels=0)
    assert d.action == "promote" and d.share == 1.0


def test_a_worse_challenger_is_rolled_back() -> None:
    d = decide(_two(0.1), CLEAN, CANARY, share=0.25, step_labels=5_000)
    assert d.action == "rollback" and d.share == 0.0
    assert d.evidence.direction == "worse" and d.evidence.lower > 0
    assert d.evidence.design == "two_sample" and d.evidence.n_challenger == 5_000


def test_a_better_challenger_walks_the_ramp_then_is_promoted() -> None:
    early = decide(_two(-0.1), CLEAN, CANARY, share=0.05, step_labels=5_000)
    assert early.action == "advance" and early.share == 0.25
    last = decide(_two(-0.1), CLEAN, CANARY, share=0.5, step_labels=5_000)
    assert last.action == "promote" and last.share == 1.0
    assert last.evidence.upper < 0 and last.evidence.p_value <= CANARY.alpha


def test_shadow_mode_decides_on_the_same_rows() -> None:
    rng = np.random.default_rng(1)
    champion = rng.exponential(0.5, 2_000)
    challenger = champion * 0.97  # 3% better on every row: invisible to two samples
    stats = ArmStatistics.from_losses(champion, challenger, paired=True)
    d = decide(stats, CLEAN, SHADOW, share=0.0, step_labels=2_000)
    assert d.action == "promote" and d.evidence.design == "paired"
    unpaired = ArmStatistics.from_losses(champion, challenger, paired=False)
    assert decide(unpaired, CLEAN, SHADOW, share=0.0, step_labels=2_000).action == "continue"
    with pytest.raises(ValueError, match="same rows"):
        ArmStatistics.from_losses(champion, challenger[:10], paired=True)


def test_a_broken_guardrail_rolls_back_even_a_better_challenger() -> None:
    slow = GuardrailObservation(5_000, 5_000, 0.0, 2.0, 0.02)
    d = decide(_two(-0.1), slow, CANARY, share=0.05, step_labels=5_000)
    assert d.action == "rollback" and "p99 latency" in d.reason
    assert d.guardrails.broken and not d.guardrails.ok


def test_too_few_labels_continue() -> None:
    d = decide(_two(0.5, n=100), CLEAN, CANARY, share=0.05, step_labels=100)
    assert d.action == "continue" and d.share == 0.05


def test_no_decision_at_the_maximum_sample_keeps_the_champion() -> None:
    champion, _ = _losses(2_000, 0.0)
    stats = ArmStatistics.from_losses(champion, champion[::-1], paired=False)
    config = RolloutConfig(mode="canary", max_sample=2_000)
    d = decide(stats, CLEAN, config, share=0.5, step_labels=2_000)
    assert d.action == "no_decision" and d.share == 0.0
    below = decide(stats, CLEAN, RolloutConfig(mode="canary"), share=0.5, step_labels=2_000)
    assert below.action == "continue"  # the next step is full traffic: only evidence goes there


def test_an_undecided_clean_step_advances() -> None:
    champion, _ = _losses(2_000, 0.0)
    stats = ArmStatistics.from_losses(champion, champion[::-1], paired=False)
    d = decide(stats, CLEAN, CANARY, share=0.05, step_labels=CANARY.min_labels)
    assert d.action == "advance" and d.share == 0.25
    d = decide(stats, CLEAN, CANARY, share=0.05, step_labels=CANARY.min_labels - 1)
    assert d.action == "continue"


def test_the_margin_promotes_a_challenger_that_is_not_worse_by_more_than_it() -> None:
    rng = np.random.default_rng(2)
    champion = rng.exponential(0.5, 4_000)
    challenger = champion + 0.005 + rng.normal(0, 0.01, 4_000)  # slightly worse
    stats = ArmStatistics.from_losses(champion, challenger, paired=True)
    strict = decide(stats, CLEAN, SHADOW, share=0.0, step_labels=4_000)
    assert strict.action == "rollback"
    lenient = RolloutConfig(mode="shadow", margin=0.02)
    assert decide(stats, CLEAN, lenient, share=0.0, step_labels=4_000).action == "promote"


def test_the_previous_look_carries_the_always_valid_p_value_and_interval() -> None:
    base = np.random.default_rng(4).exponential(0.5, 5_000)
    early = ArmStatistics.from_losses(base[:2_000], base[:2_000][::-1] + 0.04, paired=False)
    now = ArmStatistics.from_losses(base, base[::-1], paired=False)  # exactly no difference
    first = decide(early, CLEAN, CANARY, share=0.05, step_labels=0)
    later = decide(now, CLEAN, CANARY, share=0.05, step_labels=0)
    carried = decide(now, CLEAN, CANARY, share=0.05, step_labels=0, previous=first.evidence)
    assert first.evidence.p_value < later.evidence.p_value
    assert carried.evidence.p_value == first.evidence.p_value
    assert carried.evidence.lower == max(first.evidence.lower, later.evidence.lower)
    assert carried.evidence.upper == min(first.evidence.upper, later.evidence.upper)
    json.loads(dumps(carried))  # the evidence is plain JSON: events and artifacts take it
    rough = decide(_two(0.3, n=50), CLEAN, CANARY, share=0.05, step_labels=0)
    assert rough.evidence.p_value < later.evidence.p_value  # a look below min_labels ...
    ignored = decide(now, CLEAN, CANARY, share=0.05, step_labels=0, previous=rough.evidence)
    assert ignored.evidence == later.evidence  # ... is not carried
    with pytest.raises(ValueError, match="another test"):
        other = RolloutConfig(mode="canary", margin=0.01)
        decide(now, CLEAN, other, share=0.05, step_labels=0, previous=first.evidence)


def test_no_labels_yet_continue_with_json_safe_evidence() -> None:
    empty = ArmStatistics.from_losses(np.array([]), np.array([]), paired=False)
    d = decide(empty, CLEAN, CANARY, share=0.05, step_labels=0)
    assert d.action == "continue" and d.evidence.lower is None and d.evidence.p_value == 1.0
    json.loads(dumps(d))


def test_guardrails_are_judged_once_both_arms_have_requests() -> None:
    rng = np.random.default_rng(3)
    n = 1_000
    obs = observe_guardrails(
        errors_champion=np.zeros(n, bool), errors_challenger=rng.random(n) < 0.05,
        latency_champion=rng.gamma(2, 5, n), latency_challenger=rng.gamma(2, 5, n),
        scores_champion=rng.beta(2, 5, n), scores_challenger=rng.beta(5, 2, n),
    )  # fmt: skip
    assert obs.error_rate_increase == pytest.approx(0.05, abs=0.02)
    assert 0.7 < obs.p99_latency_ratio < 1.4
    check = check_guardrails(obs, CANARY.guardrails)
    assert check.judged and len(check.broken) == 2  # error rate and score shift, not latency
    few = GuardrailObservation(10, 10, 1.0, 9.0, 1.0)
    assert check_guardrails(few, CANARY.guardrails).ok


def test_config_rejects_a_ramp_that_does_not_climb_to_full_traffic() -> None:
    for ramp in [(0.5, 0.25, 1.0), (0.05, 0.5), (0.0, 1.0), (0.5, 0.5, 1.0)]:
        with pytest.raises(ValidationError):
            RolloutConfig(ramp=ramp)
    assert CANARY.next_step(0.05) == 0.25 and CANARY.next_step(1.0) == 1.0


def test_per_row_losses() -> None:
    y = np.array([0, 1, 1, 0, 1])
    p = np.array([0.1, 0.8, 0.3, 0.0, 1.0])
    assert per_row_loss("log_loss", y, p).mean() == pytest.approx(log_loss(y, p))
    np.testing.assert_allclose(per_row_loss("brier", y, p), (p - y) ** 2)
    np.testing.assert_allclose(per_row_loss("absolute_error", y, p), np.abs(p - y))
    with pytest.raises(ValueError, match="shape"):
        per_row_loss("squared_error", y, p[:3])
