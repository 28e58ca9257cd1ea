"""The simulation harness of the decision procedure: thousands of experiments, no HTTP.

Each experiment looks after every ``look_every`` labelled rows per arm until ``max_sample``
per arm, runs the always-valid test of :mod:`tasks.rollout.sequential` with the config's
alpha, margin, mixture and ``min_labels``, and stops at its first verdict (promote or roll
back), exactly as :func:`tasks.rollout.decision.decide` does. Beside it, the naive procedure
many dashboards run: a two-sided z-test at ``alpha`` at every look.

Speed: per-row losses come from :mod:`tasks.rollout.scenario`, grouped into blocks of
``look_every`` rows (sum and sum of squares per block) in a pool; an experiment draws its blocks
from the pool, so 10,000 experiments x 400 looks cost a few cumulative sums, not 10^9 rows.
In an A/A scenario both arms draw from one pool (two-sample) or the pool holds each block of
differences and its mirror (paired), so the null holds exactly, not up to pool noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.stats import binomtest, norm

from tasks.rollout import sequential
from tasks.rollout.config import RolloutConfig
from tasks.rollout.scenario import Scenario, simulate_losses
from tasks.rollout.sequential import BETTER, UNDECIDED, WORSE, Summary

Design = Literal["paired", "two_sample"]
POWER = 0.8
CONFIDENCE = 0.95
POOL_BLOCKS = 20_000  # blocks of look_every rows per pool (each experiment draws ~400)
_CHUNK = 1_000  # experiments per vectorised batch (bounds memory at ~100 MB)


@dataclass(frozen=True)
class Rate:
    """``k`` of ``n`` experiments, with a Wilson score interval at ``CONFIDENCE``."""

    k: int
    n: int
    low: float
    high: float

    @property
    def rate(self) -> float:
        return self.k / self.n

    @classmethod
    def of(cls, k: int, n: int) -> Rate:
        ci = binomtest(int(k), int(n)).proportion_ci(CONFIDENCE, method="wilson")
        return cls(int(k), int(n), float(ci.low), float(ci.high))


@dataclass(frozen=True)
class SimulationResult:
    design: Design
    relative_change: float  # requested: challenger's expected log loss / champion's - 1
    realized_change: float  # in the pool the experiments drew from
    experiments: int
    look_every: int
    max_sample: int
    promoted: Rate
    rolled_back: Rate
    naive_decided: Rate  # naive repeated z-test: any rejection, either direction
    sample_for_power: int | None  # per arm: the right verdict in POWER of experiments by then
    median_sample_at_decision: float | None

    @property
    def decided(self) -> Rate:
        """Either verdict (the false-decision rate in an A/A scenario)."""
        k = self.promoted.k + self.rolled_back.k
        return Rate.of(k, self.experiments)

    @property
    def power(self) -> Rate | None:
        """The right verdict's rate (None for A/A, where every verdict is wrong)."""
        if self.relative_change == 0:
            return None
        return self.rolled_back if self.relative_change > 0 else self.promoted


@dataclass(frozen=True)
class _Pool:
    """Per-block sums of per-row losses: champion/challenger, or differences when paired."""

    a: tuple[np.ndarray, np.ndarray]
    b: tuple[np.ndarray, np.ndarray] | None
    realized_change: float


def _block_sums(losses: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    grouped = losses.reshape(-1, block)
    return grouped.sum(axis=1), (grouped**2).sum(axis=1)


def _pool(
    scenario: Scenario, design: Design, block: int, blocks: int, rng: np.random.Generator
) -> _Pool:
    champion, challenger = simulate_losses(blocks * block, scenario, rng)
    null = scenario.relative_change == 0
    realized = 0.0 if null else float(challenger.mean() / champion.mean() - 1)
    if design == "paired":
        s, sq = _block_sums(challenger - champion, block)
        if null:  # exchangeable models: add each block's mirror
            s, sq = np.concatenate([s, -s]), np.concatenate([sq, sq])
        return _Pool((s, sq), None, realized)
    if null:
        return _Pool(_block_sums(champion, block), None, realized)
    return _Pool(_block_sums(champion, block), _block_sums(challenger, block), realized)


def _cumulative(sums: tuple[np.ndarray, np.ndarray], idx: np.ndarray, looks: np.ndarray):
    return Summary.from_sums(looks, np.cumsum(sums[0][idx], 1), np.cumsum(sums[1][idx], 1))


def _batch(pool: _Pool, design: Design, config: RolloutConfig, n_exp: int, block: int,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Per experiment: verdict code, labels per arm at the verdict, naive rejection."""
    n_looks = config.max_sample // block
    looks = block * np.arange(1, n_looks + 1, dtype=np.float64)
    size = len(pool.a[0])
    kwargs = {"alpha": config.alpha, "rho": config.mixture_rho, "margin": config.margin}
    first = _cumulative(pool.a, rng.integers(0, size, (n_exp, n_looks)), looks)
    if design == "paired":
        test = sequential.paired(first, **kwargs)
    else:
        b = pool.b or pool.a
        second = _cumulative(b, rng.integers(0, len(b[0]), (n_exp, n_looks)), looks)
        test = sequential.two_sample(first, second, **kwargs)
    eligible = looks >= config.min_labels
    verdicts = np.where(eligible, test.verdict(), UNDECIDED)
    hit = verdicts != UNDECIDED
    at = np.where(hit.any(axis=1), hit.argmax(axis=1), -1)
    code = np.where(at >= 0, verdicts[np.arange(n_exp), at], UNDECIDED)
    z = np.abs(test.estimate - config.margin) / test.std_error
    naive = ((z > norm.ppf(1 - config.alpha / 2)) & eligible).any(axis=1)
    return code, np.where(at >= 0, looks[at], np.nan), naive


def simulate(
    scenario: Scenario,
    config: RolloutConfig,
    *,
    design: Design,
    experiments: int = 10_000,
    look_every: int = 100,
    seed: int = 0,
    pool_blocks: int = POOL_BLOCKS,
) -> SimulationResult:
    """Run ``experiments`` sequential experiments of ``scenario`` under ``config``."""
    if config.max_sample % look_every:
        raise ValueError("max_sample must be a multiple of look_every")
    rng = np.random.default_rng(seed)
    pool = _pool(scenario, design, look_every, pool_blocks, rng)
    codes, at, naive = [], [], []
    for start in range(0, experiments, _CHUNK):
        n_exp = min(_CHUNK, experiments - start)
        c, a, nv = _batch(pool, design, config, n_exp, look_every, rng)
        codes.append(c), at.append(a), naive.append(nv)
    code, when, naive_hit = np.concatenate(codes), np.concatenate(at), np.concatenate(naive)
    right = WORSE if scenario.relative_change > 0 else BETTER
    return SimulationResult(
        design=design, relative_change=scenario.relative_change,
        realized_change=pool.realized_change, experiments=experiments,
        look_every=look_every, max_sample=config.max_sample,
        promoted=Rate.of(int((code == BETTER).sum()), experiments),
        rolled_back=Rate.of(int((code == WORSE).sum()), experiments),
        naive_decided=Rate.of(int(naive_hit.sum()), experiments),
        sample_for_power=(
            _sample_for_power(when[code == right], experiments)
            if scenario.relative_change else None
        ),
        median_sample_at_decision=float(np.nanmedian(when)) if np.isfinite(when).any() else None,
    )  # fmt: skip


def _sample_for_power(decided_at: np.ndarray, experiments: int) -> int | None:
    """Labels per arm by which ``POWER`` of all experiments reached the right verdict."""
    needed = int(np.ceil(POWER * experiments))
    if len(decided_at) < needed:
        return None
    return int(np.sort(decided_at)[needed - 1])
