"""The decision policy: retrain when the model is, or is estimated to be, worse (issue #14).

Three kinds of evidence ask for a retrain, each switchable: realized loss on matured labels,
an estimated loss, and concept drift (realized worse than the estimate said). Input drift is
always reported; whether it retrains is a setting: by default only when no label-free
estimate is there to say it is harmless.

Every piece of evidence is a one-sided test on the headline metric (ROC AUC for binary
models, lower is worse; MAE for regression, higher is): the loss must exceed ``min_loss``
beyond the combined sampling error of both sides, compared like for like (realized against
the champion's realized level on its held-out reference rows, the estimate against the
estimate on those rows, realized against the estimate on the same labelled rows). A run makes
many such tests (every window of the horizon, again as its labels mature), so the run's
``false_alarm_rate`` is split over them (Bonferroni: a share per kind of evidence, then per
test): a model with no loss retrains in at most that share of runs, whatever the number of
windows looked at.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from tasks.estimation.stats import Estimate, metric_items
from tasks.estimation.trust import MIN_LABELS

if TYPE_CHECKING:
    from tasks.monitoring.checks import Performance
    from tasks.monitoring.evidence import Evidence
    from tasks.monitoring.window import Champion

InputDrift = Literal["retrain", "retrain_without_estimate", "report_only"]
DEFAULT_MIN_AUC_LOSS = 0.005  # ROC AUC: issue #14 calls a smaller change harmless
DEFAULT_MIN_RELATIVE_MAE_LOSS = 0.02  # regression: of the reference MAE


class PolicyConfig(BaseModel):
    retrain_on_realized_loss: bool = True
    retrain_on_estimated_loss: bool = True
    retrain_on_concept_drift: bool = True
    input_drift: InputDrift = Field(
        "retrain_without_estimate",
        description="retrain on input drift always, only when no estimate can judge it, never",
    )
    min_loss: float | None = Field(
        None,
        ge=0,
        description="smallest loss worth a retrain, in the headline metric's units (default: "
        f"{DEFAULT_MIN_AUC_LOSS} ROC AUC; regression: {DEFAULT_MIN_RELATIVE_MAE_LOSS:.0%} of "
        "the reference MAE)",
    )
    false_alarm_rate: float = Field(
        0.01,
        gt=0,
        lt=0.5,
        description="per monitor run: the chance that a model with no loss retrains "
        "(split over every test the run makes)",
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
    tests: int = 0  # one-sided tests this run made
    min_loss: float | None = None


@dataclass(frozen=True)
class Loss:
    """One test: how far ``got`` is worse than ``base`` beyond ``min_loss``, in standard
    errors (``z``)."""

    got: Estimate
    base: Estimate
    z: float


def _headline(task: str) -> tuple[str, int]:
    """(metric, sign): the sign makes "worse" mean "larger signed loss"."""
    return ("mae", 1) if task == "regression" else ("roc_auc", -1)


def _baseline(evidence: Evidence, champion: Champion, metric: str) -> Estimate | None:
    """The estimate's reference level: the estimate on the reference rows, else the test
    metric (with no standard error)."""
    if evidence.baseline is not None:
        found = metric_items(evidence.baseline).get(metric)
        if found is not None:
            return found
    value = champion.metrics.get(metric, champion.metrics.get("auc"))
    return Estimate(float(value), float(value), float(value)) if isinstance(
        value, int | float) else None  # fmt: skip


def min_loss(policy: PolicyConfig, metric: str, base: Estimate | None) -> float:
    """The smallest loss that retrains, in ``metric``'s units (the one default rule)."""
    if policy.min_loss is not None:
        return policy.min_loss
    if metric == "mae":
        return DEFAULT_MIN_RELATIVE_MAE_LOSS * abs(base.value) if base is not None else 0.0
    return DEFAULT_MIN_AUC_LOSS


def loss(got: Estimate | None, base: Estimate | None, sign: int, margin: float) -> Loss | None:
    """``got`` against ``base``: the signed loss beyond ``margin`` over both standard errors
    (None when either side has none)."""
    if got is None or base is None or got.std is None:
        return None
    se = math.hypot(got.std, base.std or 0.0)
    if se <= 0:
        return None
    return Loss(got, base, ((got.value - base.value) * sign - margin) / se)


def z_one_sided(alpha: float) -> float:
    return NormalDist().inv_cdf(1 - alpha)


def _realized(evidence: Evidence, metric: str, policy: PolicyConfig):
    """(window, realized) of each window with enough matured labels."""
    return [(w, metric_items(w.realized).get(metric)) for w in evidence.windows
            if w.labels >= policy.min_labels]  # fmt: skip


def _concept(evidence: Evidence, metric: str, sign: int, margin: float) -> list[tuple]:
    """(window, realized, estimated-as-reference): the trust check's pair on the labelled
    rows of each judged window."""
    out = []
    for w in evidence.windows:
        if w.trust is None or not w.trust.judged or w.estimated is None:
            continue
        gap = next((g for g in w.trust.gaps if g.metric == metric), None)
        if gap is None or gap.z == 0 or not math.isfinite(gap.z):
            continue
        se = gap.gap / gap.z  # the trust check's combined standard error
        out.append((w, Loss(Estimate(gap.realized, gap.realized, gap.realized, se),
                            Estimate(gap.estimated, gap.estimated, gap.estimated, 0.0),
                            (gap.gap * sign - margin) / se)))  # fmt: skip
    return out


def _strongest(family: list[tuple], share: float) -> tuple | None:
    """(window, loss, limit) of the family's largest loss when it passes the family's share
    of the false-alarm rate split over its tests (Bonferroni); None otherwise."""
    if not family:
        return None
    window, found = max(family, key=lambda p: p[1].z)
    limit = z_one_sided(share / len(family))
    return (window, found, limit) if found.z > limit else None


def _interval(e: Estimate) -> str:
    return f"{e.value:.3f} [{e.lower:.3f}, {e.upper:.3f}]"


def judge(
    evidence: Evidence,
    champion: Champion,
    policy: PolicyConfig,
    performance: Performance | None = None,
) -> Verdict:
    """Which evidence asks for a retrain, by the policy's switches, at the policy's
    false-alarm rate per run. A multiclass champion has no like-for-like test here yet (no
    estimator, no reference level of its one-vs-rest AUC): its realized loss is the
    fixed-margin check's (``performance``, ``checks.compute_performance``)."""
    metric, sign = _headline(evidence.task)
    baseline = _baseline(evidence, champion, metric)
    realized_base = metric_items(evidence.reference_realized).get(metric) if (
        evidence.reference_realized is not None) else baseline  # fmt: skip
    margin = min_loss(policy, metric, realized_base or baseline)
    realized = [(w, t) for w, got in _realized(evidence, metric, policy)
                if (t := loss(got, realized_base, sign, margin)) is not None]  # fmt: skip
    est = metric_items(evidence.estimate.metrics).get(metric) if evidence.estimate else None
    estimated = [(None, t)] if (t := loss(est, baseline, sign, margin)) is not None else []
    families = {
        "realized": realized if policy.retrain_on_realized_loss else [],
        "estimated": estimated if policy.retrain_on_estimated_loss else [],
        "concept": _concept(evidence, metric, sign, margin) if policy.retrain_on_concept_drift
        else [],
    }  # fmt: skip
    kinds = sum((policy.retrain_on_realized_loss, policy.retrain_on_estimated_loss,
                 policy.retrain_on_concept_drift))  # fmt: skip
    share, beyond = policy.false_alarm_rate / max(kinds, 1), f"by more than {margin:g}"
    reasons: list[str] = []
    if hit := _strongest(families["realized"], share):
        w, t, limit = hit
        reasons.append(f"realized {metric} {_interval(t.got)} on {w.labels} labels of the window "
                       f"from {w.start.isoformat()}, reference {_interval(t.base)}: worse "
                       f"{beyond} at z {t.z:.2f} > {limit:.2f}")  # fmt: skip
    if hit := _strongest(families["estimated"], share):
        _, t, limit = hit
        reasons.append(f"estimated {metric} {_interval(t.got)}, reference estimate "
                       f"{_interval(t.base)}: worse {beyond} at z {t.z:.2f} > "
                       f"{limit:.2f}")  # fmt: skip
    if hit := _strongest(families["concept"], share):
        w, t, limit = hit
        reasons.append(f"concept drift: realized {metric} {t.got.value:.3f} on {w.labels} "
                       f"labels of the window from {w.start.isoformat()}, worse than the "
                       f"estimate {t.base.value:.3f} on the same rows {beyond} at z {t.z:.2f} > "
                       f"{limit:.2f}")  # fmt: skip
    if (champion.task == "multiclass" and policy.retrain_on_realized_loss
            and performance is not None and performance.degraded):  # fmt: skip
        reasons.append(f"realized loss on {performance.labelled} labels of the window "
                       f"(multiclass, fixed-margin check): {performance.reason}")  # fmt: skip
    tests = sum(len(f) for f in families.values())
    drift_retrains = policy.input_drift == "retrain" or (
        policy.input_drift == "retrain_without_estimate" and evidence.estimate is None
    )
    note = ("input drift retrains" if drift_retrains else
            "input drift is reported; it retrains only with evidence of loss "
            f"(policy input_drift={policy.input_drift})")  # fmt: skip
    note += f"; {tests} test(s) at a false-alarm rate of {policy.false_alarm_rate:g} per run"
    base_value = baseline.value if baseline is not None else None
    return Verdict(bool(reasons), reasons, drift_retrains, metric, base_value, note, tests,
                   margin)  # fmt: skip
