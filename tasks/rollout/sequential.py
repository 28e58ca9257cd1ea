"""An always-valid test of challenger minus champion loss: a normal-mixture SPRT (mSPRT).

Johari, Pekelis, Koomen & Walsh (2017, "Always valid inference") and Howard, Ramdas,
McAuliffe & Sekhon (2021, "Time-uniform, nonparametric, nonasymptotic confidence sequences").
With ``d`` the mean loss difference (challenger - champion; > 0 means the challenger is worse),
its estimate ``d_hat``, standard error ``se`` and ``z = (d_hat - margin) / se``, mixing the
likelihood ratio over ``d - margin ~ N(0, tau^2)`` gives

    Lambda = (1 + r)^(-1/2) * exp(z^2 / 2 * r / (1 + r)),   r = tau^2 / se^2,

and ``1 / Lambda`` is an always-valid p-value: P(Lambda ever >= 1/alpha | d = margin) <= alpha
however often one looks. Inverting it gives the confidence sequence
``d_hat +- se * sqrt((1 + r) / r * (2 log(1/alpha) + log(1 + r)))``.

The plug-in: the per-row variance is unknown and estimated from the data at each look (sample
variance of the paired differences, or of each arm); the guarantee is then asymptotic, as in
Johari et al. sec. 4. ``tau^2 = rho * V`` scales the mixture with the per-row variance ``V``
(var of the differences when paired, var_champion + var_challenger for two samples), so
``r = rho * n_eff`` with ``n_eff = V / se^2`` (= n when paired or balanced) and the test is
scale-free; ``rho`` comes from the config (tightest at a stated sample size).

Two forms: ``paired`` (shadow mode: both models scored the same rows, so the per-row
differences are compared; correlated losses cancel and far fewer rows are needed) and
``two_sample`` (canary: independent arms, any split). Everything broadcasts over NumPy arrays,
so the harness runs thousands of experiments x hundreds of looks at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Direction = Literal["better", "worse", "undecided"]
Design = Literal["paired", "two_sample"]  # the same rows scored by both arms, or split rows
WORSE, UNDECIDED, BETTER = 1, 0, -1  # verdict codes (sign of challenger - champion)


@dataclass(frozen=True)
class Summary:
    """Sufficient statistics of per-row losses: count, mean, sample variance (broadcastable)."""

    n: np.ndarray
    mean: np.ndarray
    var: np.ndarray

    @classmethod
    def of(cls, losses: np.ndarray) -> Summary:
        """Summary of the last axis of ``losses``."""
        x = np.asarray(losses, dtype=np.float64)
        n = np.asarray(x.shape[-1], dtype=np.float64)
        mean = x.mean(axis=-1) if x.shape[-1] else np.zeros(x.shape[:-1])
        var = x.var(axis=-1, ddof=1) if x.shape[-1] > 1 else np.zeros(x.shape[:-1])
        return cls(n, mean, var)

    @classmethod
    def from_sums(cls, n: np.ndarray, total: np.ndarray, total_sq: np.ndarray) -> Summary:
        """From running sums (the harness keeps cumulative sums per look)."""
        n = np.asarray(n, dtype=np.float64)
        mean = total / n
        var = np.maximum(total_sq - n * mean**2, 0.0) / np.maximum(n - 1, 1)
        return cls(n, mean, var)


@dataclass(frozen=True)
class SequentialTest:
    """The test at a look; arrays in the harness, floats (0-d) for one experiment."""

    estimate: np.ndarray  # challenger - champion mean loss
    std_error: np.ndarray
    n_eff: np.ndarray
    p_value: np.ndarray  # always-valid, against d = margin
    lower: np.ndarray  # confidence sequence for d at level 1 - alpha
    upper: np.ndarray
    margin: float
    alpha: float

    def verdict(self) -> np.ndarray:
        """+1 (WORSE) when the sequence lies above the margin, -1 (BETTER) below, else 0."""
        worse = self.lower > self.margin
        better = (self.upper < self.margin) & ~worse  # an empty intersection keeps the champion
        return np.where(worse, WORSE, np.where(better, BETTER, UNDECIDED)).astype(np.int8)

    @property
    def direction(self) -> Direction:
        """The verdict of a single experiment, as a word."""
        code = int(np.asarray(self.verdict()).item())
        return "worse" if code == WORSE else "better" if code == BETTER else "undecided"


def mixture_test(
    estimate: np.ndarray,
    variance: np.ndarray,
    unit_variance: np.ndarray,
    *,
    alpha: float,
    rho: float,
    margin: float = 0.0,
) -> SequentialTest:
    """The mSPRT at one look from an estimate, its variance and the per-row variance ``V``.

    A zero variance (fewer than two rows, or identical losses) carries no evidence: p = 1 and
    an unbounded interval.
    """
    estimate = np.asarray(estimate, dtype=np.float64)
    variance = np.asarray(variance, dtype=np.float64)
    ok = variance > 0
    safe_var = np.where(ok, variance, 1.0)
    se = np.sqrt(safe_var)
    n_eff = np.where(ok, np.asarray(unit_variance) / safe_var, 0.0)
    r = np.maximum(rho * n_eff, 1e-300)
    z = (estimate - margin) / se
    log_lambda = 0.5 * (z**2 * r / (1 + r) - np.log1p(r))
    p_value = np.where(ok, np.minimum(1.0, np.exp(-np.clip(log_lambda, -700, 700))), 1.0)
    radius = se * np.sqrt((1 + r) / r * (2 * np.log(1 / alpha) + np.log1p(r)))
    radius = np.where(ok, radius, np.inf)
    return SequentialTest(
        estimate, np.where(ok, se, np.inf), n_eff, p_value,
        estimate - radius, estimate + radius, margin, alpha,
    )  # fmt: skip


def paired(diff: Summary, *, alpha: float, rho: float, margin: float = 0.0) -> SequentialTest:
    """Shadow mode: ``diff`` summarises challenger - champion loss on the same rows."""
    return mixture_test(
        diff.mean, diff.var / np.maximum(diff.n, 1), diff.var, alpha=alpha, rho=rho, margin=margin
    )


def two_sample(
    champion: Summary, challenger: Summary, *, alpha: float, rho: float, margin: float = 0.0
) -> SequentialTest:
    """Canary mode: independent arms of any sizes (Welch's variance of the difference)."""
    # var is 0 below two rows, so an empty arm gives variance 0: no evidence
    variance = champion.var / np.maximum(champion.n, 1) + challenger.var / np.maximum(
        challenger.n, 1
    )
    return mixture_test(
        challenger.mean - champion.mean, variance, champion.var + challenger.var,
        alpha=alpha, rho=rho, margin=margin,
    )  # fmt: skip


def accumulate(previous: SequentialTest | None, current: SequentialTest) -> SequentialTest:
    """Carry the always-valid quantities across looks: the running minimum p-value and the
    running intersection of the intervals (both stay valid under any stopping rule)."""
    if previous is None:
        return current
    return SequentialTest(
        current.estimate, current.std_error, current.n_eff,
        np.minimum(previous.p_value, current.p_value),
        np.maximum(previous.lower, current.lower), np.minimum(previous.upper, current.upper),
        current.margin, current.alpha,
    )  # fmt: skip
