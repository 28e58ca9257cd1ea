"""Result types shared by every estimator, and the interval formulas behind them.

An :class:`Estimate` is a value with a two-sided interval at ``confidence``; ``std`` is the
standard error the interval came from (``None`` when the interval is not normal-based).
Metric sets are dataclasses with the same fields whether estimated or realized, so the trust
check compares them field by field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from statistics import NormalDist
from typing import Any

import numpy as np

from tasks.metrics import rank_average

CONFIDENCE = 0.95  # the default two-sided level of every interval


@dataclass(frozen=True)
class Estimate:
    value: float
    lower: float
    upper: float
    std: float | None = None

    def covers(self, x: float) -> bool:
        return self.lower <= x <= self.upper


@dataclass(frozen=True)
class BinaryMetrics:
    """Metrics of a binary model at its decision threshold (``None`` where undefined)."""

    roc_auc: Estimate | None
    precision: Estimate | None
    recall: Estimate | None
    f1: Estimate | None
    accuracy: Estimate | None


@dataclass(frozen=True)
class RegressionMetrics:
    mae: Estimate | None
    rmse: Estimate | None


@dataclass(frozen=True)
class MulticlassMetrics:
    """Realized metrics of a multiclass model: the predicted class against the label."""

    accuracy: Estimate | None


Metrics = BinaryMetrics | RegressionMetrics | MulticlassMetrics
_KINDS = {"binary": BinaryMetrics, "regression": RegressionMetrics,
          "multiclass": MulticlassMetrics}  # fmt: skip


def metric_items(metrics: Metrics) -> dict[str, Estimate | None]:
    """The metric set as name -> estimate, in field order (for reports and comparisons)."""
    return {f.name: getattr(metrics, f.name) for f in fields(metrics)}


def metrics_to_json(metrics: Metrics) -> dict[str, Any]:
    fields_ = {k: None if e is None else [e.value, e.lower, e.upper, e.std]
               for k, e in metric_items(metrics).items()}  # fmt: skip
    kind = next(k for k, cls in _KINDS.items() if isinstance(metrics, cls))
    return {"kind": kind, **fields_}


def metrics_from_json(doc: dict[str, Any]) -> Metrics:
    cls = _KINDS[doc["kind"]]
    values = {f.name: doc[f.name] for f in fields(cls)}
    return cls(**{k: None if v is None else Estimate(*v) for k, v in values.items()})


def z_value(confidence: float = CONFIDENCE) -> float:
    """The two-sided normal quantile, e.g. 1.96 for 0.95."""
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def normal(
    value: float,
    std: float,
    confidence: float = CONFIDENCE,
    *,
    lo: float = -math.inf,
    hi: float = math.inf,
) -> Estimate:
    """``value ± z·std``, clipped to the metric's range."""
    z = z_value(confidence)
    return Estimate(value, max(lo, value - z * std), min(hi, value + z * std), std)


def wilson(successes: float, trials: float, confidence: float = CONFIDENCE) -> Estimate | None:
    """A proportion with its Wilson score interval (good at small counts and near 0 or 1)."""
    if trials <= 0:
        return None
    z = z_value(confidence)
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return Estimate(
        p, max(0.0, centre - half), min(1.0, centre + half), math.sqrt(p * (1 - p) / trials)
    )


def delong(y: np.ndarray, s: np.ndarray, confidence: float = CONFIDENCE) -> Estimate | None:
    """ROC AUC with DeLong's standard error (placement values, O(n log n))."""
    y = np.asarray(y, dtype=bool)
    s = np.asarray(s, dtype=float)
    m, n = int(y.sum()), int((~y).sum())
    if m == 0 or n == 0:
        return None
    ranks = rank_average(s)
    pos_ranks, neg_ranks = ranks[y], ranks[~y]
    auc = float((pos_ranks.sum() - m * (m + 1) / 2) / (m * n))
    v10 = (pos_ranks - rank_average(s[y])) / n  # share of negatives below each positive
    v01 = 1.0 - (neg_ranks - rank_average(s[~y])) / m  # share of positives above each negative
    var = (v10.var(ddof=1) / m if m > 1 else 0.0) + (v01.var(ddof=1) / n if n > 1 else 0.0)
    return normal(auc, math.sqrt(var), confidence, lo=0.0, hi=1.0)


def two_proportion_z(x1: float, n1: float, x2: float, n2: float) -> tuple[float, float]:
    """(z, two-sided p-value) of ``x1/n1`` against ``x2/n2`` with a pooled variance."""
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 0.0, 1.0
    z = (x1 / n1 - x2 / n2) / se
    return z, math.erfc(abs(z) / math.sqrt(2))
