"""The retrain flow hands a gate winner to the configured rollout instead of promoting it: the
champion stays, the challenger alias and a canary experiment open in the index, and
``driftloop.rollout.started`` carries the gate's evidence (``direct`` is tested in
test_retrain.py: the winner is promoted at once)."""

from __future__ import annotations

import pytest
from _stack_fixtures import champion_world, flipped_labels, write_traffic

from flows.retrain import RetrainConfig, RetrainTrigger, retrain
from tasks import events, registry
from tasks.gate import GateConfig
from tasks.rollout.config import RolloutConfig
from tasks.rollout.experiment import read_experiment
from tests.support.homes import N_REFERENCE

CANARY = RolloutConfig(mode="canary", ramp=(0.1, 0.5, 1.0), min_labels=200)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with champion_world(tmp_path_factory, "retrain-rollout-home") as w:
        yield w.settings, w.champion, w.rows.slice(N_REFERENCE, 1500)


def test_a_gate_winner_starts_a_canary_and_a_second_retrain_waits_for_it(world, prefect_harness):
    settings, champion, recent = world
    write_traffic(settings, champion, recent, flipped_labels(recent))
    config = RetrainConfig(
        strategy="sliding_window", window_rows=1300, trials=2, timeout_s=60, min_rows=100,
        gate=GateConfig(margin=0.08, max_slice_regression=0.1), rollout=CANARY,
    )  # fmt: skip
    result = retrain(config=config, trigger=RetrainTrigger(reason="drift"))

    assert result["promote"] is True, result["reason"]
    new = result["challenger_tag"]
    aliases = registry.read_index(settings)["telco"]["aliases"]
    assert aliases == {"champion": champion.tag, "challenger": new}
    assert result["champion_after"] == champion.tag
    running = read_experiment("telco", settings)
    assert (running.mode, running.challenger, running.share) == ("canary", new, 0.1)
    assert running.config == CANARY and result["rollout"]["id"] == running.id
    records = events.pending_events(settings) + events.sent_events(settings)
    (started,) = [r for r in records if r["event"] == events.ROLLOUT_STARTED]
    assert started["id"] == result["event_id"]
    assert started["payload"]["evidence"]["challenger_score"] == result["challenger_score"]
    assert not [r for r in records if r["event"] == events.MODEL_PROMOTED]

    # A second retrain while the canary runs (a drift event, the weekly schedule) completes as
    # skipped with the rollout named, instead of failing on the open experiment: no new model
    # version, the experiment and aliases untouched.
    versions = [m["tag"] for m in registry.list_models("telco", settings)]
    again = retrain(config=config, trigger=RetrainTrigger(reason="drift"))
    assert again["skipped"] is True and again["promote"] is False
    assert f"rollout {running.id} (canary of {new}" in again["reason"]
    assert again["champion_after"] == champion.tag
    assert [m["tag"] for m in registry.list_models("telco", settings)] == versions
    assert registry.read_index(settings)["telco"]["aliases"] == aliases
    assert read_experiment("telco", settings) == running
