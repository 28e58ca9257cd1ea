"""From prediction-log rows and labels to the decision's inputs: arms, errors, pairs, steps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from tasks.predlog import FEEDBACK_TYPES, PREDICTION_TYPES
from tasks.rollout.config import RolloutConfig
from tasks.rollout.evaluate import decide_look, evaluate
from tasks.rollout.experiment import Experiment
from tasks.rollout.losses import per_row_loss

T0 = datetime(2026, 6, 1, tzinfo=UTC)
A, B = "toy:a", "toy:b"


def _experiment(mode: str, share: float = 0.5, step_at: datetime = T0) -> Experiment:
    return Experiment(
        id="e1", model="toy", mode=mode, champion=A, challenger=B, salt="toy/e1", share=share,
        started_at=T0, step_started_at=step_at,
        config=RolloutConfig(mode=mode, ramp=(0.5, 1.0), min_labels=10),
    )  # fmt: skip


def _rows(tags, arms, scores, *, minutes=None, shadow=None, latency=None) -> pl.DataFrame:
    n = len(tags)
    minutes = range(n) if minutes is None else minutes
    return pl.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(n)], "entity_id": [f"e{i}" for i in range(n)],
            "ts": [T0 + timedelta(minutes=m) for m in minutes], "model_tag": tags,
            "score": scores, "decision": [None] * n,
            "shadow_tag": [B if shadow is not None else None] * n,
            "shadow_score": shadow if shadow is not None else [None] * n,
            "latency_ms": latency if latency is not None else [1.0] * n, "arm": arms,
        },
        schema=PREDICTION_TYPES,
    )  # fmt: skip


def _labels(request_ids, labels) -> pl.DataFrame:
    n = len(labels)
    return pl.DataFrame(
        {"request_id": request_ids, "entity_id": [None] * n, "label": labels,
         "ts": [T0 + timedelta(days=1)] * n},
        schema=FEEDBACK_TYPES,
    )  # fmt: skip


def test_canary_arms_are_the_routed_rows_and_a_fallback_is_a_challenger_error() -> None:
    tags = [A, A, B, B, A, "toy:old"]
    arms = ["champion", "champion", "challenger", "challenger", "challenger", "champion"]
    scores = [0.2, 0.7, 0.9, 0.1, 0.3, 0.5]
    rows = _rows(tags, arms, scores, latency=[1.0, 2.0, 5.0, 7.0, 1.0, 1.0])
    fb = _labels([f"r{i}" for i in range(6)], [0.0, 1.0, 0.0, 0.0, 1.0, 1.0])
    obs = evaluate(_experiment("canary"), rows, fb)
    champ, chall = obs.arms
    expected_a = per_row_loss("log_loss", np.array([0.0, 1.0]), np.array([0.2, 0.7]))
    expected_b = per_row_loss("log_loss", np.array([0.0, 0.0]), np.array([0.9, 0.1]))
    assert champ.labelled == 2 and champ.mean_loss == pytest.approx(expected_a.mean())
    assert chall.labelled == 2 and chall.mean_loss == pytest.approx(expected_b.mean())
    # r4 was routed to the challenger but the champion answered: one error in three requests
    assert chall.requests == 3 and chall.error_rate == pytest.approx(1 / 3)
    # r5 answered by a model outside the experiment: a champion-arm error, not a loss row
    assert champ.requests == 3 and champ.error_rate == pytest.approx(1 / 3)
    assert obs.stats.paired is None and obs.stats.challenger.n == 2
    assert chall.p99_latency_ms == pytest.approx(np.percentile([5.0, 7.0], 99))
    g = obs.guardrails
    assert g.error_rate_increase == pytest.approx(0.0) and g.requests_challenger == 3


def test_canary_counts_step_labels_from_the_steps_start_and_ignores_older_rows() -> None:
    rows = _rows([B] * 6, ["challenger"] * 6, [0.4] * 6, minutes=[-5, 1, 2, 3, 4, 5])
    fb = _labels([f"r{i}" for i in range(6)], [1.0] * 6)
    obs = evaluate(_experiment("canary", step_at=T0 + timedelta(minutes=3)), rows, fb)
    assert obs.arms[1].labelled == 5 and obs.step_labels == 3  # r0 predates the experiment


def test_shadow_pairs_both_scores_on_the_same_labelled_rows() -> None:
    n = 40
    rng = np.random.default_rng(0)
    y = (rng.random(n) < 0.4).astype(float)
    champion = np.clip(0.5 + 0.2 * (y - 0.5) + rng.normal(0, 0.05, n), 0.01, 0.99)
    challenger = np.clip(champion + 0.15 * (y - 0.5), 0.01, 0.99)  # sharper: better
    shadow = challenger.tolist()
    shadow[3] = None  # one row the challenger failed to score
    rows = _rows([A] * n, ["champion"] * n, champion.tolist(), shadow=shadow)
    obs = evaluate(_experiment("shadow", share=0.0), rows, _labels([f"r{i}" for i in range(n)], y))
    keep = np.arange(n) != 3
    diff = per_row_loss("log_loss", y, challenger) - per_row_loss("log_loss", y, champion)
    assert obs.stats.paired is not None and int(obs.stats.paired.n) == n - 1
    assert float(obs.stats.paired.mean) == pytest.approx(diff[keep].mean())
    assert obs.arms[1].error_rate == pytest.approx(1 / n) and obs.arms[0].error_rate == 0
    assert obs.guardrails.p99_latency_ratio == 1.0  # the shadow scores off the request path
    decision = decide_look(_experiment("shadow", share=0.0), obs)
    assert decision.evidence.design == "paired" and decision.evidence.n_challenger == n - 1


def test_logs_without_an_arm_column_count_as_champion_rows() -> None:
    rows = _rows([A, A], [None, None], [0.3, 0.6]).drop("arm")
    obs = evaluate(_experiment("canary"), rows, _labels(["r0", "r1"], [0.0, 1.0]))
    assert obs.arms[0].labelled == 2 and obs.arms[1].requests == 0
    assert obs.arms[1].mean_loss is None and obs.step_labels == 0
