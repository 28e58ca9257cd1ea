"""The rollout's one config object: mode, ramp, the test's alpha and metric, limits, guardrails.

Every default is stated here once; the decision, the test and the harness read them from here.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, Field, field_validator

RolloutMode = Literal["direct", "shadow", "canary"]
LossMetric = Literal["log_loss", "brier", "squared_error", "absolute_error"]


class GuardrailConfig(BaseModel):
    """Operational limits for the challenger against the champion; a break rolls back."""

    max_error_rate_increase: float = Field(
        0.01, ge=0, description="challenger error rate minus champion's (absolute share)"
    )
    max_p99_latency_ratio: float = Field(1.5, gt=0, description="challenger p99 / champion p99")
    max_score_ks: float = Field(
        0.2, gt=0, le=1, description="KS statistic between the arms' score distributions"
    )
    min_requests: int = Field(200, ge=1, description="per arm, before guardrails are judged")


class RolloutConfig(BaseModel):
    """How a challenger reaches traffic and what decides its fate.

    ``margin`` is in units of the primary metric (e.g. nats of log loss): 0 asks for a better
    challenger (superiority); ``m > 0`` promotes one that is not worse by more than ``m`` and
    rolls back only one worse by more than ``m`` (non-inferiority).
    """

    mode: RolloutMode = "direct"
    ramp: tuple[float, ...] = Field(
        (0.05, 0.25, 0.5, 1.0), description="challenger's traffic share per canary step"
    )
    alpha: float = Field(0.05, gt=0, lt=0.5, description="always-valid false-decision rate")
    metric: LossMetric = "log_loss"
    margin: float = Field(0.0, ge=0, description="non-inferiority margin in metric units")
    min_labels: int = Field(
        500, ge=2, description="labelled rows per arm (per canary step) before any verdict"
    )
    # 40,000: the canary harness needs ~18,000 labels per arm for 80% power at a 5% log-loss
    # change (bench/bench_rollout.py), so 40,000 catches it with room; shadow needs ~2,500
    max_sample: int = Field(
        40_000, ge=100, description="labelled rows per arm; then stop: no decision, champion stays"
    )
    tuned_fraction: float = Field(
        0.5, gt=0, le=1, description="the mixture is tightest at this share of max_sample"
    )
    guardrails: GuardrailConfig = GuardrailConfig()

    @field_validator("ramp")
    @classmethod
    def _ramp_increasing_to_one(cls, ramp: tuple[float, ...]) -> tuple[float, ...]:
        if not ramp or any(not 0 < s <= 1 for s in ramp) or list(ramp) != sorted(set(ramp)):
            raise ValueError("ramp must be strictly increasing shares in (0, 1]")
        if ramp[-1] != 1.0:
            raise ValueError("the ramp ends at 1.0 (full traffic is the promotion)")
        return ramp

    @property
    def mixture_rho(self) -> float:
        """The mixture's variance per effective row, in units of the per-row variance
        (``tau^2 = rho * V``), so that the boundary is tightest at ``tuned_fraction *
        max_sample`` rows (Howard et al. 2021's choice for a normal mixture)."""
        log_term = 2 * math.log(1 / self.alpha)
        return (log_term + math.log(1 + log_term)) / (self.tuned_fraction * self.max_sample)

    def next_step(self, share: float) -> float:
        """The ramp's next share after ``share`` (1.0 stays 1.0)."""
        return next((s for s in self.ramp if s > share), 1.0)
