"""Per-row losses of the primary metrics (lower is better), the unit the rollout test compares."""

from __future__ import annotations

import numpy as np

from tasks.rollout.config import LossMetric

PROBABILITY_EPS = 1e-15  # as tasks.metrics.log_loss: a score of exactly 0 or 1 costs ~34.5 nats


def per_row_loss(metric: LossMetric, y: np.ndarray, score: np.ndarray) -> np.ndarray:
    """The loss of each row: log loss / Brier for a binary label and a probability score,
    squared / absolute error for a regression target and a prediction."""
    y = np.asarray(y, dtype=np.float64)
    score = np.asarray(score, dtype=np.float64)
    if y.shape != score.shape:
        raise ValueError(f"labels {y.shape} and scores {score.shape} differ in shape")
    if metric == "log_loss":
        p = np.clip(score, PROBABILITY_EPS, 1 - PROBABILITY_EPS)
        return -(y * np.log(p) + (1 - y) * np.log1p(-p))
    if metric == "brier" or metric == "squared_error":
        return (score - y) ** 2
    if metric == "absolute_error":
        return np.abs(score - y)
    raise ValueError(f"unknown metric {metric!r}")
