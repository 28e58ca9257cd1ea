"""Multiclass through the task functions: labels, training, evaluation, the card, the gate,
serving's prediction type, feedback labels, the monitor's performance and retrain's labels."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandera.polars as pa
import polars as pl
import pytest

from schemas.base import DatasetSpec
from tasks.evaluate import class_indices, evaluate_model, label_vector

CLASSES = ("bronze", "gold", "silver")


class Tier(pa.DataFrameModel):
    x1: pl.Float64 = pa.Field()
    x2: pl.Float64 = pa.Field()
    region: str = pa.Field(isin=["east", "west"])
    tier: str = pa.Field(isin=list(CLASSES))


DS = DatasetSpec(
    name="tiers", model=Tier, target="tier", task="multiclass", classes=CLASSES,
    segment_columns=("region",),
)  # fmt: skip


def _frame(n: int = 900, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    k = np.digitize(x1 + 0.3 * rng.normal(size=n), [-0.5, 0.5])  # learnable from x1
    return pl.DataFrame(
        {
            "x1": x1,
            "x2": x2,
            "region": rng.choice(["east", "west"], n),
            "tier": np.asarray(CLASSES)[k],
        }  # fmt: skip
    )


def test_labels_are_class_indices_and_unknown_classes_are_named() -> None:
    frame = pl.DataFrame({"tier": ["gold", "bronze", "silver"], "x1": [0.0] * 3})
    assert label_vector(frame, DS).tolist() == [1.0, 0.0, 2.0]
    with pytest.raises(ValueError, match=r"\['platinum'\] are not among the known classes"):
        class_indices(pl.Series(["gold", "platinum"]), CLASSES)
    with pytest.raises(ValueError, match="lists its classes"):
        replace(DS, classes=())


@pytest.fixture(scope="module")
def trained():
    from tasks.features import FeatureSpec
    from tasks.training.model import score_splits, train_model
    from tasks.training.split import split_data
    from tasks.training.tune import TuneOptions

    frame = _frame()
    features = FeatureSpec.from_dataset(DS)
    splits = split_data(frame, DS, seed=0)
    options = TuneOptions(trials=3, timeout_s=None, seed=0, num_threads=1, storage=None,
                          study_name="mc", n_jobs=1, pruning=True)  # fmt: skip
    model = train_model(splits, DS, features, options)
    return splits, model, score_splits(model, splits, DS, features)


def test_training_is_multiclass_and_evaluation_has_the_multiclass_metrics(trained) -> None:
    splits, model, scored = trained
    assert model.params["objective"] == "multiclass" and model.params["num_class"] == 3
    assert model.params["metric"] == "multi_logloss"
    assert scored.test_scores.shape == (splits.test.height, 3)
    np.testing.assert_allclose(scored.test_scores.sum(axis=1), 1.0)
    result = evaluate_model(DS, scored, business=None)
    m = result.metrics
    assert result.threshold is None and result.business == {}
    assert 0 < m["log_loss"] < np.log(3)  # better than a uniform guess
    assert m["roc_auc_ovr_macro"] > 0.8 and m["accuracy"] > 0.6
    assert np.array(m["confusion_matrix"]).sum() == splits.test.height
    assert len(m["precision_per_class"]) == 3 and m["f1_macro"] > 0
    assert set(result.slices["region"]["values"]) == {"east", "west"}
    assert result.slices["region"]["gap"]["accuracy"] is not None


def test_card_names_the_classes_and_shows_per_class_rates(trained) -> None:
    from tasks.card import Clock, model_record

    splits, model, scored = trained
    result = evaluate_model(DS, scored, business=None)
    record = model_record(dataset=DS, data_version="v", splits=splits, model=model,
                          evaluation=result, lineage={}, clock=Clock())  # fmt: skip
    assert record.metadata["classes"] == list(CLASSES)
    card = record.card
    assert "classes `bronze`, `gold`, `silver`" in card
    assert "| gold |" in card and "Confusion matrix" in card and "roc_auc_ovr_macro" in card


def test_gate_compares_multiclass_models_by_log_loss(trained) -> None:
    from tasks.gate import GateConfig, compare

    splits, _, scored = trained
    y = scored.test_y
    uniform = np.full_like(scored.test_scores, 1 / 3)
    config = GateConfig(min_eval_rows=10, bootstrap_rounds=50)
    better = compare(splits.test, y, uniform, scored.test_scores, task="multiclass",
                     segment_columns=["region"], config=config)  # fmt: skip
    assert better.metric == "log_loss" and better.promote, better.reason
    assert better.improvement_low is not None and better.improvement_low > 0
    worse = compare(splits.test, y, scored.test_scores, uniform, task="multiclass",
                    config=config)  # fmt: skip
    assert not worse.promote


def test_prediction_columns_and_service_outputs() -> None:
    from tasks.predict import Prediction, class_outputs

    proba = np.array([[0.2, 0.7, 0.1], [0.6, 0.3, 0.1]])
    p = Prediction(proba.max(axis=1), None, proba, CLASSES)
    cols = p.class_columns()
    assert cols["predicted_class"] == ["gold", "bronze"]
    assert list(cols) == ["predicted_class", "proba_bronze", "proba_gold", "proba_silver"]
    out = class_outputs(cols)
    assert out[0] == {"predicted_class": "gold",
                      "probabilities": {"bronze": 0.2, "gold": 0.7, "silver": 0.1}}  # fmt: skip


def test_feedback_labels_map_to_indices_and_unknown_ones_are_refused() -> None:
    from pydantic import ValidationError

    from schemas.requests import FeedbackItem, label_values, request_models

    models = request_models(DS)
    items = [FeedbackItem(request_id="a", label=v) for v in ("silver", "bronze")]
    assert label_values(items, models) == [2.0, 0.0]
    with pytest.raises(ValidationError, match="unknown label 'tin'; expected 'bronze'"):
        label_values([FeedbackItem(request_id="a", label="tin")], models)


def test_monitor_performance_and_retrain_labels_for_multiclass() -> None:
    from datetime import UTC, datetime

    from tasks.monitoring.checks import PerformanceConfig, compute_performance
    from tasks.monitoring.window import Champion
    from tasks.retrain import _target_values

    now = datetime.now(UTC)
    proba = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.7, 0.2, 0.1]])
    window = pl.DataFrame({
        "request_id": ["r0", "r1", "r2", "r3"], "entity_id": [None] * 4, "ts": [now] * 4,
        "score": proba.max(axis=1),
        **{f"proba_{c}": proba[:, k] for k, c in enumerate(CLASSES)},
    })  # fmt: skip
    labels = pl.DataFrame({"request_id": ["r0", "r1", "r2", "r3"], "entity_id": [None] * 4,
                           "label": [0.0, 1.0, 2.0, 1.0], "ts": [now] * 4})  # fmt: skip
    metrics = {"roc_auc_ovr_macro": 0.9, "precision_per_class": [1, 1, 1],
               "recall_per_class": [1, 1, 1]}  # fmt: skip
    champion = Champion("tiers", "tiers:x", metrics, None, 0.5, None, CLASSES)
    perf = compute_performance(window, labels, champion, PerformanceConfig(min_labels=1))
    assert perf.labelled == 4 and perf.champion_auc == 0.9
    assert perf.recall == pytest.approx(np.mean([1.0, 0.5, 1.0]))  # r3 (gold) called bronze
    mapped = _target_values(pl.Series("label", [2.0, 0.0]), DS)
    assert mapped.to_list() == ["silver", "bronze"]


def test_wandb_charts_per_class_roc_and_the_confusion_counts() -> None:
    from types import SimpleNamespace

    from tasks.tracking import _class_charts

    tables: list = []

    def table(columns, data):
        tables.append((columns, data))
        return (columns, data)

    fake = SimpleNamespace(
        Table=table,
        plot=SimpleNamespace(line=lambda t, x, y, title: ("line", title)),
        plot_table=lambda kind, t, fields, opts: ("table", t[1]),
    )
    y = np.array([0, 1, 2, 2])
    proba = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.1, 0.6, 0.3]])
    charts = _class_charts(fake, y, proba)
    assert sorted(k for k in charts if "roc" in k) == [
        f"test/roc_curve_class_{k}" for k in range(3)
    ]
    counts = {(a, p): n for a, p, n in charts["test/confusion_matrix"][1]}
    assert counts[("class 2", "class 1")] == 1 and counts[("class 2", "class 2")] == 1
    assert sum(counts.values()) == 4
