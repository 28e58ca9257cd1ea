"""Evaluation: metrics, slices, the business-value threshold, labels from frames."""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl
import pytest

from schemas import load_dataset
from tasks.evaluate import (
    BusinessValue,
    choose_threshold,
    compute_metrics,
    expected_value,
    label_vector,
    slice_metrics,
)

KNOBS = {"value_retained": 100.0, "offer_cost": 10.0, "offer_success_rate": 0.5}


def test_label_vector_uses_positive_class_and_accepts_numeric_labels() -> None:
    ds = load_dataset("telco")
    y = label_vector(pl.DataFrame({"Churn": ["Yes", "No", "Yes"]}), ds)
    assert y.tolist() == [1.0, 0.0, 1.0]
    assert label_vector(pl.DataFrame({"Churn": [1.0, 0.0]}), ds).tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="only 0 and 1"):
        label_vector(pl.DataFrame({"Churn": [2.0, 0.0]}), ds)
    with pytest.raises(ValueError, match="'Churn' is missing"):
        label_vector(pl.DataFrame({"x": [1]}), ds)
    with pytest.raises(ValueError, match="1 missing"):
        label_vector(pl.DataFrame({"Churn": ["Yes", None]}), ds)


def test_binary_metrics_known_values() -> None:
    y = np.array([0, 0, 1, 1, 1, 0])
    s = np.array([0.1, 0.6, 0.7, 0.9, 0.4, 0.2])
    m = compute_metrics(y, s, 0.5, "binary")
    assert m["confusion"] == {"tn": 2, "fp": 1, "fn": 1, "tp": 2}
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["roc_auc"] == pytest.approx(8 / 9)  # 8 of 9 positive/negative pairs ordered
    assert m["brier"] == pytest.approx(np.mean((s - y) ** 2))
    assert sum(m["reliability"]["count"]) == len(y)
    assert 0 < m["pr_auc"] <= 1 and m["log_loss"] > 0


def test_metrics_on_one_class_report_none_not_nan() -> None:
    m = compute_metrics(np.ones(4), np.array([0.2, 0.4, 0.6, 0.8]), 0.5, "binary")
    assert m["roc_auc"] is None and m["recall"] == 0.5


def test_regression_metrics() -> None:
    y = np.array([1.0, 2.0, 3.0, 4.0])
    m = compute_metrics(y, y + np.array([1.0, -1.0, 1.0, -1.0]), None, "regression")
    assert m["mse"] == 1.0 and m["mae"] == 1.0 and m["rmse"] == 1.0
    assert m["r2"] == pytest.approx(1 - 4 / 5)


def test_choose_threshold_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(300) < 0.3).astype(float)
    s = np.round(np.clip(y * 0.3 + rng.random(300) * 0.7, 0, 1), 2)  # with ties
    t, value = choose_threshold(y, s, **KNOBS)
    brute = max(expected_value(y, s, c, **KNOBS) for c in np.unique(s))
    assert value == pytest.approx(brute)
    assert expected_value(y, s, t, **KNOBS) == pytest.approx(value)


def test_choose_threshold_flags_nobody_when_offers_never_pay() -> None:
    y, s = np.array([0.0, 1.0, 0.0]), np.array([0.2, 0.5, 0.9])
    t, value = choose_threshold(y, s, value_retained=10, offer_cost=100, offer_success_rate=0.5)
    assert value == 0.0 and t > s.max()
    assert expected_value(y, s, t, 10, 100, 0.5) == 0.0


def test_expected_value_by_hand() -> None:
    # two flagged: one churner (0.5 * 100 - 10 = 40), one not (-10)
    assert expected_value(np.array([1, 0, 1]), np.array([0.9, 0.8, 0.1]), 0.5, **KNOBS) == 30.0


def test_slice_metrics_expose_a_gap() -> None:
    frame = pl.DataFrame({"g": ["a"] * 4 + ["b"] * 4})
    y = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    s = np.array([0.1, 0.9, 0.2, 0.8, 0.9, 0.1, 0.8, 0.2])  # perfect on a, inverted on b
    out = slice_metrics(frame, y, s, 0.5, ["g"], "binary")
    assert out["g"]["values"]["a"]["roc_auc"] == 1.0
    assert out["g"]["values"]["b"]["roc_auc"] == 0.0
    assert out["g"]["gap"]["roc_auc"] == 1.0 and out["g"]["gap"]["recall"] == 1.0
    with pytest.raises(ValueError, match="segment column 'nope'"):
        slice_metrics(frame, y, s, 0.5, ["nope"], "binary")


def test_business_value_defaults_from_dataset_and_overrides() -> None:
    ds = load_dataset("telco")
    bv = BusinessValue.from_dataset(ds, offer_cost=12.0)
    assert bv.offer_cost == 12.0 and bv.value_retained == ds.extras["value_retained"]


@pytest.mark.parametrize("n", [1, 2, 5])
def test_choose_threshold_small_inputs(n: int) -> None:
    for y in itertools.product([0.0, 1.0], repeat=n):
        s = np.linspace(0.1, 0.9, n)
        t, v = choose_threshold(np.array(y), s, **KNOBS)
        assert v >= 0 and v == pytest.approx(expected_value(np.array(y), s, t, **KNOBS))


def test_business_value_is_optional_and_partial_knobs_are_an_error() -> None:
    from dataclasses import replace

    ds = replace(load_dataset("telco"), extras={})
    assert BusinessValue.from_dataset(ds) is None
    with pytest.raises(ValueError, match="offer_cost, offer_success_rate"):
        BusinessValue.from_dataset(ds, value_retained=10.0)
    full = BusinessValue.from_dataset(
        ds, value_retained=10.0, offer_cost=1.0, offer_success_rate=0.5
    )
    assert full == BusinessValue(10.0, 1.0, 0.5)


@pytest.mark.parametrize("seed", range(5))
def test_f1_threshold_is_the_brute_force_best(seed: int) -> None:
    from tasks.evaluate import f1_threshold

    rng = np.random.default_rng(seed)
    y = (rng.random(40) < 0.3).astype(float)
    s = np.round(rng.random(40), 1)  # ties
    t, f1 = f1_threshold(y, s)

    def f1_at(th: float) -> float:
        pred = s >= th
        tp = float((pred & (y == 1)).sum())
        return 2 * tp / (pred.sum() + y.sum()) if pred.sum() + y.sum() else 0.0

    best = max(f1_at(th) for th in np.unique(s))
    assert f1 == pytest.approx(best) and f1_at(t) == pytest.approx(best)
