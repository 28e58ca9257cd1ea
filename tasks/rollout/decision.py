"""The rollout decision: a pure function of the arms' loss statistics, the guardrails, the
config and where the ramp stands. No I/O; the flow keeps the returned evidence (plain numbers)
for the next look, which carries the always-valid p-value and interval forward.

Order of the rules (the first that applies wins):
1. ``direct`` mode: the offline gate already decided, promote.
2. A broken guardrail: roll back.
3. Fewer than ``min_labels`` labelled rows in an arm: continue.
4. The always-valid test says worse (its interval lies above the margin): roll back.
5. It says better (below the margin): promote in shadow mode, and in canary mode advance to the
   next step, or promote when the next step is full traffic.
6. ``max_sample`` rows in both arms and no verdict: stop, no decision, the champion stays.
7. Canary: the current step saw ``min_labels`` challenger rows and the next step is not full
   traffic: advance (not shown worse, guardrails clean; more traffic brings more power).
8. Otherwise: continue.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from tasks.rollout import sequential
from tasks.rollout.config import RolloutConfig
from tasks.rollout.guardrails import GuardrailCheck, GuardrailObservation, check_guardrails
from tasks.rollout.sequential import Design, SequentialTest, Summary

Action = Literal["continue", "advance", "promote", "rollback", "no_decision"]


@dataclass(frozen=True)
class ArmStatistics:
    """Per-arm summaries of per-row losses; ``paired`` holds challenger - champion on the same
    rows (shadow mode) and selects the paired test."""

    champion: Summary
    challenger: Summary
    paired: Summary | None = None

    @classmethod
    def from_losses(
        cls, champion_loss: np.ndarray, challenger_loss: np.ndarray, *, paired: bool
    ) -> ArmStatistics:
        """From per-row loss arrays; ``paired`` needs both arrays aligned on the same rows."""
        champion_loss = np.asarray(champion_loss, dtype=np.float64)
        challenger_loss = np.asarray(challenger_loss, dtype=np.float64)
        if paired and champion_loss.shape != challenger_loss.shape:
            raise ValueError("a paired comparison needs the same rows scored by both models")
        diff = Summary.of(challenger_loss - champion_loss) if paired else None
        return cls(Summary.of(champion_loss), Summary.of(challenger_loss), diff)


@dataclass(frozen=True)
class Evidence:
    """The statistics behind a decision, as plain numbers (for events and artifacts)."""

    design: Design
    n_champion: int
    n_challenger: int
    mean_loss_champion: float
    mean_loss_challenger: float
    difference: float  # challenger - champion mean loss; > 0: challenger worse
    std_error: float | None  # None: no variance yet (no evidence)
    lower: float | None  # always-valid confidence sequence for the difference (None: unbounded)
    upper: float | None
    p_value: float  # always-valid, against difference == margin
    margin: float
    alpha: float
    direction: sequential.Direction


@dataclass(frozen=True)
class RolloutDecision:
    action: Action
    reason: str
    share: float  # the challenger's traffic share from now on (0: champion only, 1: promoted)
    evidence: Evidence  # keep it: it is the ``previous`` of the next look (JSON-safe)
    guardrails: GuardrailCheck


def _finite(x: np.ndarray) -> float | None:
    value = float(x)
    return value if math.isfinite(value) else None


def _design(stats: ArmStatistics) -> Design:
    return "paired" if stats.paired is not None else "two_sample"


def run_test(
    stats: ArmStatistics, config: RolloutConfig, previous: Evidence | None = None
) -> SequentialTest:
    """The always-valid test for these statistics (paired when they are), carrying the
    smallest p-value and the intersected interval of the earlier looks of ``previous``.

    Looks with fewer than ``min_labels`` rows per arm are not carried: their plug-in variance is
    too rough to lean on (the harness counts verdicts from the same looks only)."""
    kwargs = {"alpha": config.alpha, "rho": config.mixture_rho, "margin": config.margin}
    if stats.paired is not None:
        current = sequential.paired(stats.paired, **kwargs)
    else:
        current = sequential.two_sample(stats.champion, stats.challenger, **kwargs)
    if previous is None or min(previous.n_champion, previous.n_challenger) < config.min_labels:
        return current
    same = (previous.design, previous.margin, previous.alpha)
    if same != (_design(stats), config.margin, config.alpha):
        raise ValueError(f"the previous look {same} is from another test")
    earlier = replace(
        current,
        p_value=np.float64(previous.p_value),
        lower=np.float64(-np.inf if previous.lower is None else previous.lower),
        upper=np.float64(np.inf if previous.upper is None else previous.upper),
    )
    return sequential.accumulate(earlier, current)


def _evidence(stats: ArmStatistics, test: SequentialTest) -> Evidence:
    return Evidence(
        design=_design(stats),
        n_champion=int(stats.champion.n), n_challenger=int(stats.challenger.n),
        mean_loss_champion=float(stats.champion.mean),
        mean_loss_challenger=float(stats.challenger.mean),
        difference=float(test.estimate), std_error=_finite(test.std_error),
        lower=_finite(test.lower), upper=_finite(test.upper), p_value=float(test.p_value),
        margin=test.margin, alpha=test.alpha, direction=test.direction,
    )  # fmt: skip


def decide(
    stats: ArmStatistics,
    guardrails: GuardrailObservation,
    config: RolloutConfig,
    *,
    share: float,
    step_labels: int,
    previous: Evidence | None = None,
) -> RolloutDecision:
    """What to do now. ``share`` is the challenger's current share (ignored in shadow mode),
    ``step_labels`` the challenger's labelled rows since the current step began, ``previous``
    the evidence of the last look of this experiment (``None`` at the first)."""
    test = run_test(stats, config, previous)
    check = check_guardrails(guardrails, config.guardrails)
    evidence = _evidence(stats, test)

    def out(action: Action, reason: str, new_share: float) -> RolloutDecision:
        return RolloutDecision(action, reason, new_share, evidence, check)

    n_min = min(evidence.n_champion, evidence.n_challenger)
    low, high = float(test.lower), float(test.upper)
    ci = f"difference {evidence.difference:+.4g} in [{low:+.4g}, {high:+.4g}]"
    nxt = config.next_step(share)
    if config.mode == "direct":
        return out("promote", "direct mode: the offline gate decided", 1.0)
    if not check.ok:
        return out("rollback", "guardrail broken: " + "; ".join(check.broken), 0.0)
    if n_min < config.min_labels:
        return out("continue", f"{n_min} labelled rows per arm < {config.min_labels}", share)
    if evidence.direction == "worse":
        return out("rollback", f"challenger worse beyond the margin: {ci}", 0.0)
    if evidence.direction == "better":
        if config.mode == "shadow" or nxt == 1.0:
            return out("promote", f"challenger better than the margin: {ci}", 1.0)
        return out("advance", f"challenger better, ramping to {nxt:.0%}: {ci}", nxt)
    if n_min >= config.max_sample:
        return out("no_decision", f"maximum sample {config.max_sample} reached: {ci}", 0.0)
    if config.mode == "canary" and step_labels >= config.min_labels and nxt < 1.0:
        return out("advance", f"step clean after {step_labels} labels, ramping to {nxt:.0%}", nxt)
    return out("continue", f"no verdict yet: {ci}", share)
