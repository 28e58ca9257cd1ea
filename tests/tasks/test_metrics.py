"""tasks.metrics against the metrics' definitions, computed the slow, obvious way."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tasks import metrics as m


def _cases(n_cases: int = 40):
    rng = np.random.default_rng(7)
    for _ in range(n_cases):
        n = int(rng.integers(4, 60))
        y = rng.integers(0, 2, n)
        y[:2] = [0, 1]  # both classes
        s = np.round(rng.random(n), int(rng.integers(1, 3)))  # coarse scores: many ties
        yield y, s


def _auc_pairs(y, s) -> float:
    pos, neg = s[y == 1], s[y == 0]
    wins = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p, q in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def _ap_by_threshold(y, s) -> float:
    """Σ (R_k - R_{k-1}) P_k over distinct thresholds, highest first."""
    total, prev_recall = 0.0, 0.0
    for t in sorted(set(s.tolist()), reverse=True):
        pred = s >= t
        tp = int((pred & (y == 1)).sum())
        precision, recall = tp / pred.sum(), tp / (y == 1).sum()
        total += (recall - prev_recall) * precision
        prev_recall = recall
    return total


def test_roc_auc_is_the_pairwise_win_rate_with_ties_halved() -> None:
    for y, s in _cases():
        assert m.roc_auc(y, s) == pytest.approx(_auc_pairs(y, s), abs=1e-12)


def test_weighted_roc_auc_counts_each_row_its_weight_times() -> None:
    rng = np.random.default_rng(11)
    for y, s in _cases():
        w = rng.integers(1, 4, y.size)
        assert m.weighted_roc_auc(y, s, w) == pytest.approx(
            m.roc_auc(np.repeat(y, w), np.repeat(s, w)), abs=1e-12
        )
        assert m.weighted_roc_auc(y, s, np.ones(y.size)) == pytest.approx(m.roc_auc(y, s))


def test_average_precision_matches_its_definition() -> None:
    for y, s in _cases():
        assert m.average_precision(y, s) == pytest.approx(_ap_by_threshold(y, s), abs=1e-12)


def test_rank_average_shares_ranks_among_ties() -> None:
    assert m.rank_average([10, 20, 20, 5, 20]).tolist() == [2.0, 4.0, 4.0, 1.0, 4.0]


def test_curves_hold_one_point_per_distinct_threshold() -> None:
    for y, s in _cases(10):
        fpr, tpr, thr = m.roc_curve(y, s)
        distinct = sorted(set(s.tolist()), reverse=True)
        assert thr[0] == np.inf and thr[1:].tolist() == distinct
        assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
        for t, f, r in zip(distinct, fpr[1:], tpr[1:], strict=True):
            pred = s >= t
            assert r == pytest.approx(pred[y == 1].mean())
            assert f == pytest.approx(pred[y == 0].mean())
        precision, recall, pthr = m.precision_recall_curve(y, s)
        assert pthr.tolist() == distinct[::-1] and (precision[-1], recall[-1]) == (1.0, 0.0)
        assert np.all(np.diff(recall) <= 0)


def test_threshold_metrics_and_log_loss() -> None:
    y = np.array([1, 1, 0, 0, 1, 0])
    pred = np.array([1, 0, 1, 0, 1, 0])
    assert m.confusion(y, pred) == (2, 1, 1, 2)  # tn, fp, fn, tp
    got = m.classification(y, pred)
    assert got == pytest.approx({"accuracy": 4 / 6, "precision": 2 / 3, "recall": 2 / 3,
                                 "f1": 2 / 3})  # fmt: skip
    assert m.classification([0, 0], [0, 0])["precision"] == 0.0  # zero division -> 0
    p = np.array([0.9, 0.6, 0.4, 0.2, 0.7, 0.1])
    want = -np.mean([np.log(0.9), np.log(0.6), np.log(0.6), np.log(0.8), np.log(0.7),
                     np.log(0.9)])  # fmt: skip
    assert m.log_loss(y, p) == pytest.approx(want)
    assert np.isfinite(m.log_loss([1, 0], [0.0, 1.0]))  # clipped, never infinite


def test_regression_metrics() -> None:
    y, s = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.5, 2.0, 2.0, 5.0])
    assert m.mse(y, s) == pytest.approx((0.25 + 0 + 1 + 1) / 4)
    assert m.mae(y, s) == pytest.approx((0.5 + 0 + 1 + 1) / 4)
    assert m.r2(y, s) == pytest.approx(1 - 2.25 / 5.0)
    assert m.r2(y, y) == 1.0


@pytest.mark.parametrize(
    "call",
    [
        lambda: m.roc_auc([1, 1], [0.2, 0.3]),
        lambda: m.average_precision([0, 0], [0.2, 0.3]),
        lambda: m.roc_auc([0, 2], [0.2, 0.3]),
        lambda: m.roc_auc([0, 1, 1], [0.2, 0.3]),
        lambda: m.r2([1.0, 1.0], [1.0, 2.0]),
        lambda: m.log_loss([], []),
    ],
)
def test_undefined_metrics_raise_value_error(call) -> None:
    with pytest.raises(ValueError):
        call()


def _multiclass_cases(n_cases: int = 25):
    rng = np.random.default_rng(11)
    for _ in range(n_cases):
        k = int(rng.integers(3, 6))
        n = int(rng.integers(k + 2, 50))
        y = rng.integers(0, k, n)
        y[:k] = np.arange(k)  # every class present
        raw = np.round(rng.random((n, k)), 1) + 1e-3
        yield y, raw / raw.sum(axis=1, keepdims=True), k


@pytest.mark.parametrize("average", ["macro", "weighted"])
def test_roc_auc_ovr_is_the_mean_of_pairwise_one_vs_rest_aucs(average: str) -> None:
    for y, p, k in _multiclass_cases():
        aucs = [_auc_pairs((y == c).astype(int), p[:, c]) for c in range(k)]
        weights = [float((y == c).sum()) if average == "weighted" else 1.0 for c in range(k)]
        expected = sum(a * w for a, w in zip(aucs, weights, strict=True)) / sum(weights)
        assert m.roc_auc_ovr(y, p, average) == pytest.approx(expected)


def test_multi_log_loss_confusion_and_per_class_rates_by_loops() -> None:
    for y, p, k in _multiclass_cases():
        loss = -sum(np.log(p[i, y[i]]) for i in range(len(y))) / len(y)
        assert m.multi_log_loss(y, p) == pytest.approx(loss)
        pred = p.argmax(axis=1)
        cm = [[sum(1 for t, q in zip(y, pred, strict=True) if t == a and q == b)
               for b in range(k)] for a in range(k)]  # fmt: skip
        out = m.multiclass_classification(y, pred, k)
        assert out["confusion_matrix"] == cm
        assert out["accuracy"] == pytest.approx(np.mean(y == pred))
        f1s = []
        for c in range(k):
            tp = sum(1 for t, q in zip(y, pred, strict=True) if t == c and q == c)
            flagged, actual = int((pred == c).sum()), int((y == c).sum())
            prec = tp / flagged if flagged else 0.0
            rec = tp / actual
            assert out["precision_per_class"][c] == pytest.approx(prec)
            assert out["recall_per_class"][c] == pytest.approx(rec)
            f1s.append(2 * prec * rec / (prec + rec) if prec + rec else 0.0)
        assert out["f1_macro"] == pytest.approx(np.mean(f1s))


def test_multiclass_metrics_reject_bad_shapes_and_labels() -> None:
    p = np.full((3, 3), 1 / 3)
    with pytest.raises(ValueError, match="probability matrix"):
        m.multi_log_loss([0, 1], p)
    with pytest.raises(ValueError, match="class indices"):
        m.multi_log_loss([0, 1, 3], p)
    with pytest.raises(ValueError, match="two classes present"):
        m.roc_auc_ovr([1, 1, 1], p)
