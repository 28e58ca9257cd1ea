"""driftloop's own Prometheus metrics, beside BentoML's (served together on ``/metrics``).

Created on first use, never at import: BentoML sets ``PROMETHEUS_MULTIPROC_DIR`` in each
worker after importing the service module, and a metric made before that is invisible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tasks.lazy import once

SCORE_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))  # binary scores in [0, 1]


@dataclass(frozen=True)
class ServingMetrics:
    predictions: Any  # Counter{model_tag}
    scores: Any  # Histogram{model_tag}
    validation_failures: Any  # Counter{field, rule}
    feedback: Any  # Counter{key}
    swaps: Any  # Counter{alias, outcome}


@once
def serving_metrics() -> ServingMetrics:
    from prometheus_client import Counter, Histogram

    return ServingMetrics(
        predictions=Counter(
            "driftloop_predictions", "Records scored, by model tag.", ["model_tag"]
        ),
        scores=Histogram(
            "driftloop_prediction_score",
            "Champion scores, by model tag.",
            ["model_tag"],
            buckets=SCORE_BUCKETS,
        ),
        validation_failures=Counter(
            "driftloop_validation_failures",
            "Rejected request fields, by field and contract rule.",
            ["field", "rule"],
        ),
        feedback=Counter("driftloop_feedback", "Feedback labels received, by join key.", ["key"]),
        swaps=Counter(
            "driftloop_model_swaps",
            "Model loads after an alias moved, by alias and outcome.",
            ["alias", "outcome"],
        ),
    )


def observe_scores(histogram: Any, model_tag: str, scores: np.ndarray) -> None:
    """Add many scores of one model at once (see :func:`observe_many`)."""
    observe_many(histogram.labels(model_tag=model_tag), scores)


def observe_many(child: Any, values: np.ndarray) -> None:
    """Add many observations to a histogram (or one labelled child) at once: one bucket
    increment per bucket, not one ``observe`` call per value.

    Uses prometheus_client's private child internals (``_upper_bounds``, ``_buckets``,
    ``_sum``; checked against the pinned 0.26 by tests/service/test_metrics_internals.py),
    and falls back to one ``observe`` per value if the bucket internals are gone.
    """
    bounds = getattr(child, "_upper_bounds", None)
    buckets = getattr(child, "_buckets", None)
    if bounds is None or buckets is None or len(bounds) != len(buckets):
        for s in values:  # a prometheus_client without these internals: slow path
            child.observe(float(s))
        return
    finite = values[np.isfinite(values)]
    counts = np.bincount(np.searchsorted(np.asarray(bounds), finite, side="left"))
    for i, n in enumerate(counts.tolist()):
        if n:
            buckets[i].inc(n)
    child._sum.inc(float(finite.sum()))
