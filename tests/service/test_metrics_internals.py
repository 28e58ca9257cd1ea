"""The prometheus_client internals ``bentos.metrics.observe_scores`` relies on, pinned."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, Histogram

from bentos.metrics import SCORE_BUCKETS, observe_scores


def _samples(histogram: Histogram) -> dict[tuple, float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for metric in histogram.collect()
        for s in metric.samples
        if not s.name.endswith("_created")
    }


def _histogram(name: str) -> Histogram:
    return Histogram(name, "scores", ["model_tag"], buckets=SCORE_BUCKETS,
                     registry=CollectorRegistry())  # fmt: skip


def test_histogram_child_keeps_the_bucket_internals_the_fast_path_uses():
    child = _histogram("internals").labels(model_tag="m:1")
    bounds, buckets = child._upper_bounds, child._buckets
    assert list(bounds) == [*SCORE_BUCKETS, float("inf")]
    assert len(buckets) == len(bounds)
    buckets[0].inc(2)
    child._sum.inc(0.5)
    assert buckets[0].get() == 2 and child._sum.get() == 0.5


def test_batched_observation_equals_one_observe_per_score():
    scores = np.concatenate([np.random.default_rng(3).random(500), [0.0, 0.05, 1.0, np.nan]])
    batched, single = _histogram("batched"), _histogram("single")
    observe_scores(batched, "m:1", scores)
    for s in scores[np.isfinite(scores)]:
        single.labels(model_tag="m:1").observe(float(s))
    got = {(n.replace("batched", "x"), lab): v for (n, lab), v in _samples(batched).items()}
    want = {(n.replace("single", "x"), lab): v for (n, lab), v in _samples(single).items()}
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert np.isclose(got[key], value), key
