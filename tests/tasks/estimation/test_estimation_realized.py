"""Late labels, scored per prediction-time window: known answers on tiny logs."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from schemas.records import TS
from tasks.estimation.realized import (
    binary_metrics,
    label_rate_drift,
    labelled_by_window,
    labels_since,
    regression_metrics,
    score_windows,
)
from tasks.estimation.stats import delong, wilson
from tasks.metrics import roc_auc

T0 = datetime(2026, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def _predictions(rows: list[tuple[str, float, float]]) -> pl.DataFrame:
    """(request id, hours after T0, score)."""
    return pl.DataFrame(
        {
            "request_id": [r[0] for r in rows],
            "entity_id": [None] * len(rows),
            "ts": [T0 + timedelta(hours=r[1]) for r in rows],
            "score": [r[2] for r in rows],
        },
        schema_overrides={"ts": TS, "entity_id": pl.String},
    )


def _feedback(rows: list[tuple[str, float, float]]) -> pl.DataFrame:
    """(request id, label, hours after T0 the label arrived)."""
    return pl.DataFrame(
        {
            "request_id": [r[0] for r in rows],
            "entity_id": [None] * len(rows),
            "label": [r[1] for r in rows],
            "ts": [T0 + timedelta(hours=r[2]) for r in rows],
        },
        schema={"request_id": pl.String, "entity_id": pl.String, "label": pl.Float64, "ts": TS},
    )


PREDS = _predictions(
    [("a", 0.1, 0.9), ("b", 0.2, 0.2), ("c", 0.3, 0.7), ("d", 0.4, 0.4),
     ("e", 1.1, 0.8), ("f", 1.2, 0.3), ("g", 1.3, 0.6), ("h", 1.4, 0.1)]
)  # fmt: skip
# window 0: a (1), b (0), c (0) labelled; d not yet. window 1: e (1), f (0), h (1).
FEEDBACK = _feedback(
    [("a", 1, 0.5), ("b", 0, 0.6), ("c", 0, 2.0), ("e", 1, 1.5), ("f", 0, 2.1), ("h", 1, 1.9)]
)


def _realized(preds: pl.DataFrame, feedback: pl.DataFrame, *, horizon, as_of, anchor=None, **how):
    """Hourly windows: the labelled rows of each (``labelled_by_window``), then scored."""
    parts = labelled_by_window(preds, feedback, every=HOUR, horizon=horizon, as_of=as_of,
                               anchor=anchor)  # fmt: skip
    return score_windows(parts, HOUR, **how)


def _windows(feedback: pl.DataFrame, as_of_hours: float):
    return _realized(
        PREDS, feedback, horizon=24 * HOUR, as_of=T0 + as_of_hours * HOUR,
        threshold=0.5,
    )  # fmt: skip


def test_windows_count_predictions_labels_and_coverage() -> None:
    w0, w1 = _windows(FEEDBACK, 3.0)
    assert (w0.start, w0.end, w1.start) == (T0, T0 + HOUR, T0 + HOUR)
    assert (w0.predictions, w0.labels, w0.coverage) == (4, 3, 0.75)
    assert (w1.predictions, w1.labels) == (4, 3)
    assert w0.metrics.roc_auc.value == 1.0  # a (0.9, pos) above b, c (negatives)
    assert w1.metrics.roc_auc.value == roc_auc([1, 0, 1], [0.8, 0.3, 0.1]) == 0.5
    assert w0.label_rate.value == pytest.approx(1 / 3)


def test_a_label_counts_only_once_it_has_arrived() -> None:
    (w0,) = _windows(FEEDBACK, 1.0)  # by 1h: only window 0 exists, only a and b labelled
    assert w0.labels == 2 and w0.lag.median_seconds == pytest.approx(0.4 * 3600)


def test_a_late_label_for_an_old_window_changes_that_window() -> None:
    before = _windows(FEEDBACK, 3.0)
    late = pl.concat([FEEDBACK, _feedback([("d", 1, 5.0)])])  # d's label, 4.6 h after it
    after = _windows(late, 6.0)
    assert after[0].labels == before[0].labels + 1 and after[0].coverage == 1.0
    assert after[0].metrics.roc_auc.value == roc_auc([1, 0, 0, 1], [0.9, 0.2, 0.7, 0.4])
    assert after[0].metrics.roc_auc.value != before[0].metrics.roc_auc.value
    assert after[0].metrics.recall.value == 0.5 != before[0].metrics.recall.value
    assert after[1] == before[1]  # the other window is untouched
    assert after[0].lag.p90_seconds > before[0].lag.p90_seconds


def test_horizon_drops_old_windows() -> None:
    windows = _realized(PREDS, FEEDBACK, horizon=2 * HOUR, as_of=T0 + 2.5 * HOUR, threshold=0.5)
    assert [w.start for w in windows] == [T0 + HOUR]


def test_labels_since_the_last_run() -> None:
    since = labels_since(PREDS, FEEDBACK, since=T0 + 1.0 * HOUR, as_of=T0 + 3 * HOUR, threshold=0.5)
    assert since.labels == 4 and since.predictions is None  # c, e, f, h
    assert since.lag.median_seconds == pytest.approx(0.7 * 3600)  # lags 1.7, .4, .9, .5 h


def test_labels_join_by_entity_too() -> None:
    preds = PREDS.with_columns(entity_id=pl.col("request_id"))
    fb = FEEDBACK.with_columns(entity_id=pl.col("request_id"), request_id=pl.lit(None, pl.String))
    by_entity = _realized(preds, fb, horizon=24 * HOUR, as_of=T0 + 3 * HOUR, threshold=0.5)
    assert by_entity == _windows(FEEDBACK, 3.0) and by_entity[0].labels == 3


def test_no_labels_yet_is_not_an_error() -> None:
    (w0, w1) = _windows(FEEDBACK.clear(), 3.0)
    assert w0.labels == 0 and w0.metrics.roc_auc is None and w0.lag.median_seconds is None


def test_wilson_interval_known_values() -> None:
    est = wilson(8, 10)  # textbook: 0.8 in [0.490, 0.943]
    assert est.value == 0.8
    assert (round(est.lower, 3), round(est.upper, 3)) == (0.49, 0.943)
    assert wilson(0, 0) is None


def test_delong_matches_the_brute_force_placements() -> None:
    rng = np.random.default_rng(0)
    y = rng.random(80) < 0.4
    s = np.where(y, rng.normal(1, 1, 80), rng.normal(0, 1, 80)).round(1)
    pos, neg = s[y], s[~y]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    var = psi.mean(1).var(ddof=1) / pos.size + psi.mean(0).var(ddof=1) / neg.size
    est = delong(y, s)
    assert est.value == pytest.approx(psi.mean()) and est.std == pytest.approx(math.sqrt(var))


def test_binary_metrics_and_regression_metrics() -> None:
    m = binary_metrics(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.3, 0.1]), 0.5)
    assert (m.precision.value, m.recall.value, m.accuracy.value) == (0.5, 0.5, 0.5)
    r = regression_metrics(np.array([1.0, 2.0, 3.0, 5.0]), np.array([1.0, 1.0, 4.0, 3.0]))
    assert r.mae.value == 1.0 and r.rmse.value == pytest.approx(math.sqrt(1.5))
    assert r.mae.lower < 1.0 < r.mae.upper


def test_label_rate_drift() -> None:
    rng = np.random.default_rng(1)
    ref = (rng.random(5_000) < 0.27).astype(float)
    same = label_rate_drift((rng.random(1_000) < 0.27).astype(float), ref)
    moved = label_rate_drift((rng.random(1_000) < 0.40).astype(float), ref)
    assert same.p_value > 0.05 and moved.p_value < 1e-6 and moved.rate > moved.reference_rate
    assert label_rate_drift(np.array([]), ref) is None


def test_regression_windows_score_mae_and_rmse() -> None:
    fb = FEEDBACK.with_columns(label=pl.Series([1.0, 0.0, 1.0, 2.0, 0.0, 0.0]))
    w0, w1 = _realized(PREDS, fb, horizon=24 * HOUR, as_of=T0 + 3 * HOUR, task="regression")
    assert w0.label_rate is None and w0.metrics.mae.value == pytest.approx((0.1 + 0.2 + 0.3) / 3)
    assert w1.metrics.rmse.value == pytest.approx(math.sqrt((1.2**2 + 0.3**2 + 0.1**2) / 3))


def test_binary_windows_need_the_threshold() -> None:
    with pytest.raises(ValueError, match="threshold"):
        _realized(PREDS, FEEDBACK, horizon=24 * HOUR, as_of=T0 + 3 * HOUR)


def test_windows_on_a_grid_through_an_anchor() -> None:
    """The monitor's windows end at its run's ``until``: the grid runs through that anchor,
    not the epoch (a quarter-hour offset: a and b in one window, c to f in the next)."""
    anchor = T0 + 2.25 * HOUR
    found = _realized(
        PREDS, FEEDBACK, horizon=24 * HOUR, as_of=T0 + 3 * HOUR, anchor=anchor,
        threshold=0.5,
    )  # fmt: skip
    assert [w.start for w in found] == [T0 - 0.75 * HOUR, T0 + 0.25 * HOUR, T0 + 1.25 * HOUR]
    assert [w.predictions for w in found] == [2, 4, 2]
    assert [w.labels for w in found] == [2, 3, 1]
