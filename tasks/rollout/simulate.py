"""The simulation harness of the decision procedure: thousands of experiments, no HTTP.

Each experiment looks after every ``look_every`` labelled rows of its smaller arm until that arm
has ``max_sample``, runs the always-valid test of :mod:`tasks.rollout.sequential` with the
config's alpha, margin, mixture and ``min_labels``, and stops at its first verdict (promote or
roll back), as :func:`tasks.rollout.decision.decide` does. Beside it, on the same experiments,
the naive procedure many dashboards run: a two-sided z-test at ``alpha`` at every look.

Speed: per-row losses come from :mod:`tasks.rollout.scenario`, grouped into blocks of one look's
rows (sum and sum of squares per block) in a pool; an experiment draws its blocks from the
pool, so 10,000 experiments x 400 looks cost a few cumulative sums, not 10^9 rows. In an A/A
scenario both arms' pools come from the same rows (two-sample) or the pool holds each block of
differences and its mirror (paired), so the null holds exactly, not up to pool noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest, norm

from tasks.rollout import sequential
from tasks.rollout.config import RolloutConfig
from tasks.rollout.scenario import Scenario, simulate_losses
from tasks.rollout.sequential import BETTER, UNDECIDED, WORSE, Design, Summary

POWER = 0.8
CONFIDENCE = 0.95
POOL_ROWS = 2_000_000  # per-row losses behind each pool (an experiment draws <= 400 blocks)
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
    share: float  # the challenger's share of labels (paired: 1, it scores every row)
    relative_change: float  # requested: challenger's expected log loss / champion's - 1
    realized_change: float  # in the pool the experiments drew from
    experiments: int
    look_every: int
    max_sample: int
    promoted: Rate
    rolled_back: Rate
    naive_decided: Rate  # naive repeated z-test: any rejection, either direction
    sample_for_power: (
        int | None
    )  # smaller arm's labels: the right verdict in POWER of experiments by then
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
    """Per-block sums of per-row losses: champion and challenger blocks (two-sample), or
    blocks of differences (paired, ``b`` is None)."""

    a: tuple[np.ndarray, np.ndarray]
    b: tuple[np.ndarray, np.ndarray] | None
    realized_change: float


def arm_blocks(share: float, look_every: int) -> tuple[int, int]:
    """Labels per look (champion, challenger) at a challenger ``share``: the smaller arm gets
    ``look_every``, the larger the nearest whole multiple of it (5% -> 1,900 and 100)."""
    if not 0 < share < 1:
        raise ValueError(f"a two-sample share must be in (0, 1), not {share}")
    big = look_every * max(1, round(max(share, 1 - share) / min(share, 1 - share)))
    return (big, look_every) if share <= 0.5 else (look_every, big)


def _block_sums(losses: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    grouped = losses[: len(losses) // block * block].reshape(-1, block)
    return grouped.sum(axis=1), (grouped**2).sum(axis=1)


def _pool(scenario: Scenario, design: Design, blocks: tuple[int, int], rows: int,
          rng: np.random.Generator) -> _Pool:  # fmt: skip
    champion, challenger = simulate_losses(rows, scenario, rng)
    null = scenario.relative_change == 0
    realized = 0.0 if null else float(challenger.mean() / champion.mean() - 1)
    if design == "paired":
        s, sq = _block_sums(challenger - champion, blocks[1])
        if null:  # exchangeable models: add each block's mirror
            s, sq = np.concatenate([s, -s]), np.concatenate([sq, sq])
        return _Pool((s, sq), None, realized)
    # A/A: both arms from the very same rows, so their pools have the same mean exactly
    second = champion if null else challenger
    return _Pool(_block_sums(champion, blocks[0]), _block_sums(second, blocks[1]), realized)


def _cumulative(sums: tuple[np.ndarray, np.ndarray], n_exp: int, looks: np.ndarray,
                rng: np.random.Generator) -> Summary:  # fmt: skip
    idx = rng.integers(0, len(sums[0]), (n_exp, len(looks)))
    return Summary.from_sums(looks, np.cumsum(sums[0][idx], 1), np.cumsum(sums[1][idx], 1))


def _batch(pool: _Pool, config: RolloutConfig, n_exp: int, blocks: tuple[int, int],
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Per experiment: verdict code, labels in the smaller arm at the verdict, naive
    rejection."""
    steps = np.arange(1, config.max_sample // min(blocks) + 1, dtype=np.float64)
    kwargs = {"alpha": config.alpha, "rho": config.mixture_rho, "margin": config.margin}
    if pool.b is None:
        test = sequential.paired(_cumulative(pool.a, n_exp, blocks[1] * steps, rng), **kwargs)
    else:
        first = _cumulative(pool.a, n_exp, blocks[0] * steps, rng)
        second = _cumulative(pool.b, n_exp, blocks[1] * steps, rng)
        test = sequential.two_sample(first, second, **kwargs)
    looks = min(blocks) * steps
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
    share: float = 0.5,
    look_every: int = 100,
    seed: int = 0,
    pool_rows: int = POOL_ROWS,
) -> SimulationResult:
    """Run ``experiments`` sequential experiments of ``scenario`` under ``config``.

    ``share`` is the challenger's constant share of traffic (two-sample only; paired rows are
    scored by both models); looks come every ``look_every`` labels of the smaller arm, until
    it has ``config.max_sample``.
    """
    if config.max_sample % look_every:
        raise ValueError("max_sample must be a multiple of look_every")
    blocks = (look_every, look_every) if design == "paired" else arm_blocks(share, look_every)
    rng = np.random.default_rng(seed)
    pool = _pool(scenario, design, blocks, pool_rows, rng)
    codes, at, naive = [], [], []
    for start in range(0, experiments, _CHUNK):
        c, a, nv = _batch(pool, config, min(_CHUNK, experiments - start), blocks, rng)
        codes.append(c), at.append(a), naive.append(nv)
    code, when, naive_hit = np.concatenate(codes), np.concatenate(at), np.concatenate(naive)
    right = WORSE if scenario.relative_change > 0 else BETTER
    return SimulationResult(
        design=design, share=share if design == "two_sample" else 1.0,
        relative_change=scenario.relative_change,
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
