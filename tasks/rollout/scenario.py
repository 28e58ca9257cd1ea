"""Realistic per-row log losses for the harness: a latent truth, Bernoulli labels, and two
models whose scores are the truth plus logit noise (the noisier model has the higher loss).

The challenger's noise is solved so its expected log loss is exactly ``1 + relative_change``
times the champion's (Gauss-Hermite quadrature, then bisection); the two models' errors are
correlated, as two models trained on the same data are, which is what the paired design uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.polynomial.hermite_e import hermegauss

from tasks.rollout.losses import per_row_loss

_NODES = 64
_BISECTIONS = 60


@dataclass(frozen=True)
class Scenario:
    """Champion at base rate ~0.3 with log loss ~0.5; challenger ``relative_change`` off."""

    relative_change: float = 0.0  # +0.05: challenger's expected log loss 5% higher
    logit_mean: float = -1.2
    logit_std: float = 1.5
    champion_noise: float = 1.0  # std of the champion's logit error
    error_correlation: float = 0.8  # between the two models' logit errors

    @cached_property
    def challenger_noise(self) -> float:
        """The challenger's logit-error std giving the requested expected log loss."""
        if self.relative_change == 0:
            return self.champion_noise
        target = (1 + self.relative_change) * expected_log_loss(self.champion_noise, self)
        lo, hi = 0.0, self.champion_noise
        if target < expected_log_loss(0.0, self):
            raise ValueError(f"no challenger is {-self.relative_change:.0%} better here")
        while expected_log_loss(hi, self) < target:
            hi *= 2
        for _ in range(_BISECTIONS):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if expected_log_loss(mid, self) < target else (lo, mid)
        return (lo + hi) / 2


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * x))


def expected_log_loss(noise: float, scenario: Scenario) -> float:
    """E[log loss] of a model with logit error std ``noise`` (exact up to quadrature)."""
    x, w = hermegauss(_NODES)
    w = w / w.sum()
    eta = scenario.logit_mean + scenario.logit_std * x[:, None]
    q = np.clip(_sigmoid(eta + noise * x[None, :]), 1e-15, 1 - 1e-15)
    p = _sigmoid(eta)
    loss = -(p * np.log(q) + (1 - p) * np.log1p(-q))
    return float(w @ loss @ w)


def simulate_losses(
    n: int, scenario: Scenario, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row log losses (champion, challenger) of ``n`` rows scored by both models."""
    eta = rng.normal(scenario.logit_mean, scenario.logit_std, n)
    y = (rng.random(n) < _sigmoid(eta)).astype(np.float64)
    e_a = rng.standard_normal(n)
    c = scenario.error_correlation
    e_b = c * e_a + np.sqrt(1 - c * c) * rng.standard_normal(n)
    champion = per_row_loss("log_loss", y, _sigmoid(eta + scenario.champion_noise * e_a))
    challenger = per_row_loss("log_loss", y, _sigmoid(eta + scenario.challenger_noise * e_b))
    return champion, challenger
