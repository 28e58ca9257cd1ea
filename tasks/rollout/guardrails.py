"""Guardrail observations per arm and their check against the config: error rate, p99 latency,
score distribution (KS statistic). Point estimates against limits, judged once both arms have
``min_requests``: a guardrail protects operations, so it errs toward the champion."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import ks_2samp

from tasks.rollout.config import GuardrailConfig

P99 = 99.0


@dataclass(frozen=True)
class GuardrailObservation:
    """What the service saw per arm over the experiment so far."""

    requests_champion: int
    requests_challenger: int
    error_rate_increase: float  # challenger error share - champion error share
    p99_latency_ratio: float  # challenger p99 / champion p99
    score_ks: float  # KS statistic between the arms' score distributions


@dataclass(frozen=True)
class GuardrailCheck:
    """The broken guardrails (empty: all clean, or not judged yet)."""

    judged: bool
    broken: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.broken


def observe_guardrails(
    *,
    errors_champion: np.ndarray,
    errors_challenger: np.ndarray,
    latency_champion: np.ndarray,
    latency_challenger: np.ndarray,
    scores_champion: np.ndarray,
    scores_challenger: np.ndarray,
) -> GuardrailObservation:
    """From per-request arrays: error flags (bool), latencies (any unit), model scores."""
    errors_a, errors_b = np.asarray(errors_champion, bool), np.asarray(errors_challenger, bool)
    p99_a = float(np.percentile(latency_champion, P99)) if len(latency_champion) else np.nan
    p99_b = float(np.percentile(latency_challenger, P99)) if len(latency_challenger) else np.nan
    both_scored = len(scores_champion) and len(scores_challenger)
    ks = float(ks_2samp(scores_champion, scores_challenger).statistic) if both_scored else 0.0
    both_requested = len(errors_a) and len(errors_b)
    increase = float(errors_b.mean() - errors_a.mean()) if both_requested else 0.0
    return GuardrailObservation(
        requests_champion=len(errors_a),
        requests_challenger=len(errors_b),
        error_rate_increase=increase,
        p99_latency_ratio=p99_b / p99_a if p99_a > 0 else 1.0,
        score_ks=ks,
    )


def check_guardrails(obs: GuardrailObservation, config: GuardrailConfig) -> GuardrailCheck:
    """Which limits the challenger breaks, once both arms have enough requests."""
    if min(obs.requests_champion, obs.requests_challenger) < config.min_requests:
        return GuardrailCheck(judged=False, broken=())
    broken = []
    if obs.error_rate_increase > config.max_error_rate_increase:
        broken.append(
            f"error rate +{obs.error_rate_increase:.4f} > {config.max_error_rate_increase}"
        )
    if obs.p99_latency_ratio > config.max_p99_latency_ratio:
        broken.append(f"p99 latency x{obs.p99_latency_ratio:.2f} > x{config.max_p99_latency_ratio}")
    if obs.score_ks > config.max_score_ks:
        broken.append(f"score distribution KS {obs.score_ks:.3f} > {config.max_score_ks}")
    return GuardrailCheck(judged=True, broken=tuple(broken))
