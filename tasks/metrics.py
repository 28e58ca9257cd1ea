"""Model metrics in plain NumPy: the one place every stage (evaluation, gate, monitor, demo,
W&B curves) computes them.

Why not scikit-learn: importing it (and the SciPy it drags in) cost 2–3 s in every flow-run
process, every service worker and every CLI call that touched LightGBM, which imports it when
it is installed. These are the textbook definitions, each a few lines, tested against brute
force in ``tests/tasks/test_metrics.py``.

Undefined metrics (one class only, no rows) raise :class:`ValueError`, as scikit-learn's do;
``tasks.evaluate`` turns that into ``None``.
"""

from __future__ import annotations

import numpy as np


def _binary(y, s) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=float).ravel()
    s = np.asarray(s, dtype=float).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.size} vs {s.size}")
    if y.size and not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    return y, s


def rank_average(values) -> np.ndarray:
    """1-based ranks, ties sharing their average rank (SciPy's ``rankdata`` default)."""
    v = np.asarray(values, dtype=float).ravel()
    order = np.argsort(v, kind="mergesort")
    sorted_v = v[order]
    # first index of each run of equal values, and the run lengths
    starts = np.flatnonzero(np.r_[True, sorted_v[1:] != sorted_v[:-1]])
    counts = np.diff(np.r_[starts, v.size])
    avg = starts + (counts + 1) / 2.0  # mean of ranks start+1 .. start+count
    ranks = np.empty(v.size, dtype=float)
    ranks[order] = np.repeat(avg, counts)
    return ranks


def roc_auc(y, s) -> float:
    """Area under the ROC curve = P(score of a positive > score of a negative), ties count 1/2."""
    y, s = _binary(y, s)
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC AUC needs both classes")
    ranks = rank_average(s)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def weighted_roc_auc(y, s, weights) -> float:
    """ROC AUC of rows with weights: each (positive i, negative j) pair counts ``w_i * w_j``,
    as a win when ``s_i > s_j`` and half a win on a tie (``roc_auc`` when the weights are 1)."""
    y, s = _binary(y, s)
    w = np.asarray(weights, dtype=float).ravel()
    _, group = np.unique(s, return_inverse=True)
    pos, neg = np.bincount(group, weights=w * y), np.bincount(group, weights=w * (1 - y))
    if pos.sum() <= 0 or neg.sum() <= 0:
        raise ValueError("ROC AUC needs both classes")
    return float((pos @ (np.cumsum(neg) - neg) + 0.5 * pos @ neg) / (pos.sum() * neg.sum()))


def _descending_counts(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, ...]:
    """True/false positives at each distinct threshold, highest score first."""
    order = np.argsort(-s, kind="mergesort")
    ys, ss = y[order], s[order]
    last = np.flatnonzero(np.r_[ss[1:] != ss[:-1], True])  # last row of each distinct score
    tps = np.cumsum(ys)[last]
    fps = (last + 1) - tps
    return tps, fps, ss[last]


def roc_curve(y, s) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds), starting at (0, 0) with threshold +inf."""
    y, s = _binary(y, s)
    tps, fps, thr = _descending_counts(y, s)
    if tps[-1] == 0 or fps[-1] == 0:
        raise ValueError("a ROC curve needs both classes")
    tpr = np.r_[0.0, tps / tps[-1]]
    fpr = np.r_[0.0, fps / fps[-1]]
    return fpr, tpr, np.r_[np.inf, thr]


def _precision_recall(y, s) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision and recall at each distinct threshold, highest threshold first."""
    y, s = _binary(y, s)
    tps, fps, thr = _descending_counts(y, s)
    if tps[-1] == 0:
        raise ValueError("precision and recall need positives")
    return tps / (tps + fps), tps / tps[-1], thr


def precision_recall_curve(y, s) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, thresholds), recall decreasing, ending at (1, 0) as is customary."""
    precision, recall, thr = _precision_recall(y, s)
    return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], thr[::-1]


def average_precision(y, s) -> float:
    """PR AUC as average precision: sum over thresholds of (recall gained) x precision."""
    precision, recall, _ = _precision_recall(y, s)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def log_loss(y, p, eps: float = 1e-15) -> float:
    y, p = _binary(y, p)
    if not y.size:
        raise ValueError("log loss of no rows")
    p = np.clip(p, eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def confusion(y, pred) -> tuple[int, int, int, int]:
    """(tn, fp, fn, tp) for 0/1 labels and 0/1 (or boolean) predictions."""
    y = np.asarray(y).astype(bool).ravel()
    pred = np.asarray(pred).astype(bool).ravel()
    tp = int((y & pred).sum())
    fp = int((~y & pred).sum())
    fn = int((y & ~pred).sum())
    return int(y.size - tp - fp - fn), fp, fn, tp


def classification(y, pred) -> dict[str, float]:
    """Accuracy, precision, recall and F1 at given 0/1 predictions (0 where undefined)."""
    tn, fp, fn, tp = confusion(y, pred)
    n = tn + fp + fn + tp
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": (tp + tn) / n if n else 0.0,
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


def mse(y, s) -> float:
    y, s = np.asarray(y, dtype=float), np.asarray(s, dtype=float)
    return float(np.mean((y - s) ** 2))


def mae(y, s) -> float:
    y, s = np.asarray(y, dtype=float), np.asarray(s, dtype=float)
    return float(np.mean(np.abs(y - s)))


def r2(y, s) -> float:
    y, s = np.asarray(y, dtype=float), np.asarray(s, dtype=float)
    total = float(np.sum((y - y.mean()) ** 2))
    if y.size < 2 or total == 0:
        raise ValueError("R² needs at least two different targets")
    return 1.0 - float(np.sum((y - s) ** 2)) / total


# --- multiclass: integer labels 0..K-1 and an (n, K) probability matrix --------------------


def _multiclass(y, p) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=float).ravel()
    p = np.asarray(p, dtype=float)
    if p.ndim != 2 or p.shape[0] != y.size:
        raise ValueError(f"need an (n, K) probability matrix for {y.size} labels, got {p.shape}")
    if y.size and (not np.all(y == np.round(y)) or y.min() < 0 or y.max() >= p.shape[1]):
        raise ValueError(f"labels must be class indices 0..{p.shape[1] - 1}")
    return y.astype(np.int64), p


def multi_log_loss(y, p, eps: float = 1e-15) -> float:
    """Mean negative log probability of the true class (probabilities renormalised per row)."""
    y, p = _multiclass(y, p)
    if not y.size:
        raise ValueError("log loss of no rows")
    p = np.clip(p, eps, 1.0)
    p = p / p.sum(axis=1, keepdims=True)
    return float(-np.mean(np.log(p[np.arange(y.size), y])))


def roc_auc_ovr(y, p, average: str = "macro") -> float:
    """One-vs-rest ROC AUC averaged over the classes present with both outcomes: unweighted
    (``macro``) or weighted by each class's share of rows (``weighted``)."""
    y, p = _multiclass(y, p)
    present = [k for k in range(p.shape[1]) if 0 < (y == k).sum() < y.size]
    if len(present) < 2:
        raise ValueError("one-vs-rest ROC AUC needs at least two classes present")
    aucs = np.array([roc_auc(y == k, p[:, k]) for k in present])
    if average == "weighted":
        support = np.array([(y == k).sum() for k in present], dtype=float)
        return float(np.sum(aucs * support) / support.sum())
    return float(aucs.mean())


def confusion_matrix(y, pred, n_classes: int) -> np.ndarray:
    """Counts ``[true class, predicted class]`` for class indices 0..n_classes-1."""
    y = np.asarray(y).astype(np.int64).ravel()
    pred = np.asarray(pred).astype(np.int64).ravel()
    flat = np.bincount(y * n_classes + pred, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes)


def multiclass_classification(y, pred, n_classes: int) -> dict[str, object]:
    """Accuracy, macro F1 and per-class precision / recall / support (0 where undefined)."""
    cm = confusion_matrix(y, pred, n_classes)
    tp = np.diag(cm).astype(float)
    predicted, actual = cm.sum(axis=0).astype(float), cm.sum(axis=1).astype(float)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    n = cm.sum()
    return {
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "f1_macro": float(f1.mean()),
        "precision_per_class": precision.tolist(),
        "recall_per_class": recall.tolist(),
        "support_per_class": actual.astype(int).tolist(),
        "confusion_matrix": cm.tolist(),
    }
