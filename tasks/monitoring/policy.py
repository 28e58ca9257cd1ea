"""The decision policy: retrain when the model is, or is estimated to be, worse (issue #14).

Three kinds of evidence ask for a retrain, each switchable: realized loss on matured labels,
an estimated loss whose interval excludes "no loss", and concept drift (estimate and realized
disagree beyond their intervals). Input drift is always reported; whether it retrains is a
setting: by default only when no label-free estimate is there to say it is harmless.

"No loss" is the champion's level on its reference rows: the estimate there (which, on
held-out rows, matches what was realized), else its test metric. A loss is judged on the
headline metric: ROC AUC for binary models (lower is worse), MAE for regression (higher is).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from tasks.estimation.stats import Estimate, metric_items, z_value
from tasks.estimation.trust import MIN_LABELS

if TYPE_CHECKING:
    from tasks.monitoring.evidence import Evidence
    from tasks.monitoring.window import Champion

InputDrift = Literal["retrain", "retrain_without_estimate", "report_only"]


class PolicyConfig(BaseModel):
    retrain_on_realized_loss: bool = True
    retrain_on_estimated_loss: bool = True
    retrain_on_concept_drift: bool = True
    input_drift: InputDrift = Field(
        "retrain_without_estimate",
        description="retrain on input drift always, only when no estimate can judge it, never",
    )
    min_loss: float = Field(0.0, ge=0, description="tolerated loss beyond the interval")
    realized_confidence: float = Field(
        0.99, gt=0, lt=1, description="realized vs reference: level of the two-sided test"
    )
    min_labels: int = Field(MIN_LABELS, ge=1, description="a window's labels to judge its loss")


@dataclass(frozen=True)
class Verdict:
    """What the evidence says about retraining, and why."""

    retrain: bool  # the evidence of loss asks for a retrain
    reasons: list[str]
    input_drift_retrains: bool  # a drift fire would also ask for one
    metric: str
    baseline: float | None
    note: str


def _headline(task: str) -> tuple[str, int]:
    """(metric, sign): the sign makes "worse" mean "larger signed loss"."""
    return ("mae", 1) if task == "regression" else ("roc_auc", -1)


def _baseline(evidence: Evidence, champion: Champion, metric: str) -> Estimate | None:
    """The reference level: the estimate on the reference rows, else the test metric (with
    no standard error)."""
    if evidence.baseline is not None:
        found = metric_items(evidence.baseline).get(metric)
        if found is not None:
            return found
    value = champion.metrics.get(metric, champion.metrics.get("auc"))
    return Estimate(float(value), float(value), float(value)) if isinstance(
        value, int | float) else None  # fmt: skip


def _worse(e: Estimate | None, baseline: float, sign: int, margin: float) -> bool:
    """The interval lies entirely on the bad side of the baseline (beyond ``margin``)."""
    if e is None:
        return False
    return e.upper < baseline - margin if sign < 0 else e.lower > baseline + margin


def _realized_worse(
    got: Estimate | None, base: Estimate | None, sign: int, margin: float, confidence: float
) -> bool:
    """Realized worse than the reference beyond both sampling errors (a one-sided z test at
    the two-sided ``confidence``): the reference rows are a sample too, and every window is
    looked at again as its labels mature."""
    if got is None or base is None or got.std is None:
        return False
    se = math.hypot(got.std, base.std or 0.0)
    loss = (got.value - base.value) * sign - margin
    return se > 0 and loss / se > z_value(confidence)


def judge(evidence: Evidence, champion: Champion, policy: PolicyConfig) -> Verdict:
    """Which evidence asks for a retrain, by the policy's switches."""
    metric, sign = _headline(evidence.task)
    reference = _baseline(evidence, champion, metric)
    base = reference.value if reference is not None else None
    reasons: list[str] = []
    if base is not None and policy.retrain_on_realized_loss:
        for w in evidence.windows:
            got = metric_items(w.realized).get(metric)
            matured = w.labels >= policy.min_labels
            if matured and got is not None and _realized_worse(
                got, reference, sign, policy.min_loss, policy.realized_confidence
            ):  # fmt: skip
                reasons.append(f"realized {metric} {got.value:.3f} [{got.lower:.3f}, "
                               f"{got.upper:.3f}] on {w.labels} labels of the window from "
                               f"{w.start.isoformat()}, reference {base:.3f}")  # fmt: skip
                break
    est = metric_items(evidence.estimate.metrics).get(metric) if evidence.estimate else None
    if base is not None and policy.retrain_on_estimated_loss and _worse(
        est, base, sign, policy.min_loss
    ) and est is not None:  # fmt: skip
        reasons.append(f"estimated {metric} {est.value:.3f} [{est.lower:.3f}, {est.upper:.3f}] "
                       f"excludes the reference {base:.3f}")  # fmt: skip
    if policy.retrain_on_concept_drift and evidence.concept_drift:
        flagged = [w.start.isoformat() for w in evidence.windows if w.concept_drift]
        reasons.append("concept drift: estimate and realized disagree beyond their intervals "
                       f"in the window(s) from {', '.join(flagged)}")  # fmt: skip
    estimated = evidence.estimate is not None
    drift_retrains = policy.input_drift == "retrain" or (
        policy.input_drift == "retrain_without_estimate" and not estimated
    )
    note = ("input drift retrains" if drift_retrains else
            "input drift is reported; it retrains only with evidence of loss "
            f"(policy input_drift={policy.input_drift})")  # fmt: skip
    return Verdict(bool(reasons), reasons, drift_retrains, metric, base, note)
