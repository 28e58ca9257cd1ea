"""Trust check: once enough labels of a window have matured, does the label-free estimate
still agree with the realized value?

CBPE and DLE assume the relationship between inputs and label is unchanged; a gap between
estimate and realized beyond their combined interval is evidence that it changed (concept
drift), which no input-only method can see. For a like-for-like comparison, estimate on the
scores of the labelled rows (the rows the realized metric was computed on).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tasks.estimation.stats import CONFIDENCE, BinaryMetrics, Metrics, metric_items, z_value

MIN_LABELS = 200  # matured labels a window needs before its estimate is judged
BINARY_CHECKED = ("roc_auc", "accuracy")  # metrics judged unless the caller names others
REGRESSION_CHECKED = ("mae", "rmse")


@dataclass(frozen=True)
class MetricGap:
    metric: str
    estimated: float
    realized: float
    gap: float  # realized - estimated
    z: float  # gap over the combined standard error
    flagged: bool


@dataclass(frozen=True)
class TrustCheck:
    labels: int
    judged: bool  # False below min_labels: too few labels to say
    gaps: tuple[MetricGap, ...]

    @property
    def concept_drift(self) -> bool:
        return self.judged and any(g.flagged for g in self.gaps)


def check_estimate(
    estimated: Metrics,
    realized: Metrics,
    *,
    labels: int,
    min_labels: int = MIN_LABELS,
    metrics: tuple[str, ...] | None = None,
    confidence: float = CONFIDENCE,
) -> TrustCheck:
    """Compare estimate and realized metric by metric; a gap is flagged when it exceeds
    ``z · sqrt(std_estimated² + std_realized²)`` (``z`` of ``confidence``)."""
    if type(estimated) is not type(realized):
        raise TypeError("estimate and realized metrics are of different kinds")
    default = BINARY_CHECKED if isinstance(estimated, BinaryMetrics) else REGRESSION_CHECKED
    names = metrics or default
    est, real = metric_items(estimated), metric_items(realized)
    z_limit = z_value(confidence)
    gaps = []
    for name in names:
        e, r = est[name], real[name]
        if e is None or r is None or e.std is None or r.std is None:
            continue
        se = math.sqrt(e.std**2 + r.std**2)
        gap = r.value - e.value
        z = gap / se if se > 0 else (math.inf if gap else 0.0)
        gaps.append(MetricGap(name, e.value, r.value, gap, z, abs(z) > z_limit))
    return TrustCheck(labels, labels >= min_labels, tuple(gaps))
