"""The acceptance numbers of issue 15, from the simulation harness (seeded, seconds)."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.rollout.config import RolloutConfig
from tasks.rollout.scenario import Scenario, expected_log_loss, simulate_losses
from tasks.rollout.simulate import arm_blocks, simulate

CONFIG = RolloutConfig(mode="canary")  # the defaults: alpha 0.05, max 40,000 labels per arm
A_A_EXPERIMENTS = 10_000
POWER_EXPERIMENTS = 2_000


@pytest.mark.parametrize("design", ["two_sample", "paired"])
def test_a_a_false_decisions_stay_below_alpha_however_often_one_looks(design: str) -> None:
    result = simulate(Scenario(0.0), CONFIG, design=design, experiments=A_A_EXPERIMENTS, seed=1)
    assert result.max_sample // result.look_every == 400  # 400 looks per experiment
    assert result.decided.rate <= CONFIG.alpha
    assert result.decided.high <= 0.055
    # the naive repeated z-test on the very same experiments is badly inflated
    assert result.naive_decided.low > 0.2


@pytest.mark.parametrize(("change", "design"), [(0.05, "two_sample"), (-0.05, "two_sample"),
                                                (0.05, "paired"), (-0.05, "paired")])  # fmt: skip
def test_a_5_percent_log_loss_change_is_caught_with_80_percent_power(
    change: float, design: str
) -> None:
    result = simulate(
        Scenario(change), CONFIG, design=design, experiments=POWER_EXPERIMENTS, seed=2
    )
    assert result.power is not None and result.power.low >= 0.8
    assert result.sample_for_power is not None and result.sample_for_power <= CONFIG.max_sample
    wrong = result.promoted if change > 0 else result.rolled_back
    assert wrong.rate <= CONFIG.alpha


def test_a_paired_comparison_needs_fewer_labels_than_two_samples() -> None:
    kwargs = {"experiments": POWER_EXPERIMENTS, "seed": 3}
    paired = simulate(Scenario(0.05), CONFIG, design="paired", **kwargs)
    two = simulate(Scenario(0.05), CONFIG, design="two_sample", **kwargs)
    assert paired.sample_for_power is not None and two.sample_for_power is not None
    assert paired.sample_for_power * 3 < two.sample_for_power


def test_a_tiny_effect_is_not_detected_at_a_small_maximum_sample() -> None:
    small = RolloutConfig(mode="canary", max_sample=2_000)
    result = simulate(Scenario(0.02), small, design="two_sample", experiments=1_000, seed=4)
    assert result.sample_for_power is None and result.power is not None
    assert result.power.rate < 0.2


def test_the_scenario_delivers_the_requested_log_loss_change() -> None:
    scenario = Scenario(0.05)
    ratio = expected_log_loss(scenario.challenger_noise, scenario) / expected_log_loss(
        scenario.champion_noise, scenario
    )
    assert ratio == pytest.approx(1.05, abs=1e-6)
    champion, challenger = simulate_losses(1_000_000, scenario, np.random.default_rng(5))
    assert challenger.mean() / champion.mean() == pytest.approx(1.05, abs=0.004)
    assert 0.4 < champion.mean() < 0.7  # a realistic binary classifier's log loss
    with pytest.raises(ValueError, match="better"):
        _ = Scenario(-0.5).challenger_noise


def test_a_a_stays_valid_when_the_canary_gets_only_5_percent_of_traffic() -> None:
    result = simulate(
        Scenario(0.0), CONFIG, design="two_sample", share=0.05, experiments=A_A_EXPERIMENTS, seed=6
    )
    assert result.share == 0.05
    assert result.decided.rate <= CONFIG.alpha and result.decided.high <= 0.055


def test_arm_blocks_give_the_smaller_arm_one_look_of_labels() -> None:
    assert arm_blocks(0.05, 100) == (1_900, 100)
    assert arm_blocks(0.5, 100) == (100, 100)
    assert arm_blocks(0.75, 100) == (100, 300)
    with pytest.raises(ValueError):
        arm_blocks(1.0, 100)
