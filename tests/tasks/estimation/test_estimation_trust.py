"""Trust check: a concept shift (labels altered in a segment, inputs and scores unchanged) is
flagged as a gap between estimate and realized; an unchanged window is not."""

from __future__ import annotations

import numpy as np
import pytest

from schemas.base import DatasetSpec
from tasks.estimation.cbpe import estimate_performance, fit_cbpe
from tasks.estimation.realized import binary_metrics, regression_metrics
from tasks.estimation.stats import BinaryMetrics
from tasks.estimation.trust import check_estimate
from tasks.simulate import DriftSpec, inject_drift

SEEDS = range(10)
THRESHOLD = 0.4


@pytest.fixture(scope="module")
def model(rows):
    reference, p = rows(4_000, seed=500)
    return fit_cbpe(p, reference["y"].to_numpy(), threshold=THRESHOLD)


def _check(model, rows, synthetic: DatasetSpec, seed: int, concept: bool):
    window, scores = rows(2_000, seed=seed)
    if concept:
        spec = DriftSpec("concept", column="seg", severity=0.6, seed=seed)
        window = inject_drift(window, synthetic, spec)
    estimated = estimate_performance(model, scores).metrics
    realized = binary_metrics(window["y"].to_numpy(), scores, THRESHOLD)
    return check_estimate(estimated, realized, labels=window.height)


def test_an_unchanged_window_keeps_the_estimate_trusted(model, synthetic, rows) -> None:
    flagged = [_check(model, rows, synthetic, seed, concept=False).concept_drift for seed in SEEDS]
    assert sum(flagged) <= 1, flagged


def test_a_concept_shift_in_one_segment_is_flagged(model, synthetic, rows) -> None:
    checks = [_check(model, rows, synthetic, seed, concept=True) for seed in SEEDS]
    assert sum(c.concept_drift for c in checks) >= 9
    auc = [g for g in checks[0].gaps if g.metric == "roc_auc"][0]
    assert auc.realized < auc.estimated and auc.flagged  # the model is worse than estimated


def test_too_few_labels_are_not_judged(model, synthetic, rows) -> None:
    check = _check(model, rows, synthetic, 0, concept=True)
    few = check_estimate(
        BinaryMetrics(*(None,) * 5), BinaryMetrics(*(None,) * 5), labels=check.labels
    )
    assert few.gaps == () and not few.concept_drift
    window, scores = rows(100, seed=3)
    estimated = estimate_performance(model, scores).metrics
    realized = binary_metrics(1 - window["y"].to_numpy(), scores, THRESHOLD)  # all wrong
    verdict = check_estimate(estimated, realized, labels=100)
    assert not verdict.judged and not verdict.concept_drift
    assert any(g.flagged for g in verdict.gaps)  # the gap is there, the labels too few


def test_kinds_must_match() -> None:
    y = np.array([1.0, 2.0, 3.0])
    with pytest.raises(TypeError):
        check_estimate(BinaryMetrics(*(None,) * 5), regression_metrics(y, y), labels=500)
