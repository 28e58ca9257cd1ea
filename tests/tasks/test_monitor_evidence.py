"""The monitor's evidence (issue #14): late labels scored per prediction-time window, the stored
estimate beside the realized value, the trust check, and the decision policy on them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from tasks.drift import DriftConfig, DriftResult
from tasks.estimation.cbpe import estimate_performance, fit_cbpe
from tasks.estimation.stats import BinaryMetrics, Estimate
from tasks.monitoring.checks import Performance, Quality
from tasks.monitoring.decision import decide_window
from tasks.monitoring.estimators import Estimators
from tasks.monitoring.evidence import EvidenceConfig, gather_evidence
from tasks.monitoring.policy import PolicyConfig, judge
from tasks.monitoring.state import MonitorState, StoredEstimate, load_state
from tasks.monitoring.window import Champion, Window
from tests.support.monitoring import window_findings

UNTIL = datetime(2026, 5, 4, tzinfo=UTC)
HOUR = timedelta(hours=1)
TAG = "m:1"


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("DRIFTLOOP_HOME", str(tmp_path))
    from tasks.settings import get_settings

    return get_settings().ensure_dirs()


def _calibrated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.beta(2, 5, n)
    return p, (rng.random(n) < p).astype(float)


@pytest.fixture(scope="module")
def estimators() -> Estimators:
    s, y = _calibrated(4_000, 0)
    cbpe = fit_cbpe(s, y, threshold=0.5)
    baseline = estimate_performance(cbpe, s).metrics
    return Estimators(TAG, "binary", 0.5, cbpe, None, None, baseline, int(y.sum()), y.size, ())


def _champion() -> Champion:
    return Champion("m", TAG, {"roc_auc": 0.8}, None, 0.5, None)


def _write(settings, name: str, frame: pl.DataFrame) -> None:
    frame.write_parquet(settings.predictions_dir / f"{name}.parquet")


def _predictions(start: datetime, scores: np.ndarray, prefix: str) -> pl.DataFrame:
    n = scores.size
    return pl.DataFrame({
        "request_id": [f"{prefix}{i}" for i in range(n)], "entity_id": [None] * n,
        "ts": pl.Series([start + HOUR * (i + 0.5) / n for i in range(n)]).cast(
            pl.Datetime("us", "UTC")),
        "score": scores, "model_tag": [TAG] * n,
    }, schema_overrides={"entity_id": pl.String})  # fmt: skip


def _labels(preds: pl.DataFrame, y: np.ndarray, at: datetime) -> pl.DataFrame:
    return pl.DataFrame({
        "request_id": preds["request_id"], "entity_id": pl.Series([None] * preds.height,
                                                                 dtype=pl.String),
        "label": y.astype(float), "ts": pl.Series([at] * preds.height).cast(
            pl.Datetime("us", "UTC")),
    })  # fmt: skip


def _gather(estimators, labels, state=None, config=None):
    from tasks.predlog import load_predictions

    rows = load_predictions(UNTIL - HOUR, UNTIL)
    return gather_evidence(
        rows=rows, labels=labels, bounds=Window(UNTIL - HOUR, UNTIL), estimators=estimators,
        dataset=None, quality=Quality(rows=rows.height), state=state or MonitorState(),
        config=config or EvidenceConfig(horizon_hours=3), reference=None,
    )  # fmt: skip


def test_late_label_for_an_old_window_changes_only_that_window(home, estimators):
    s_old, y_old = _calibrated(600, 1)
    s_new, _ = _calibrated(600, 2)
    old = _predictions(UNTIL - 2 * HOUR, s_old, "old")
    _write(home, "old", old)
    _write(home, "new", _predictions(UNTIL - HOUR, s_new, "new"))
    half = _labels(old.head(300), y_old[:300], UNTIL - HOUR)
    first = _gather(estimators, half)
    assert [w.start for w in first.windows] == [UNTIL - 2 * HOUR, UNTIL - HOUR]
    assert first.windows[0].labels == 300 and first.windows[0].coverage == 0.5
    assert first.windows[1].labels == 0 and first.windows[1].realized.roc_auc is None
    # the rest of the old window's labels arrive after it closed: its metric is recomputed
    late = pl.concat([half, _labels(old.tail(300), y_old[300:], UNTIL - HOUR / 2)])
    second = _gather(estimators, late)
    assert second.windows[0].labels == 600 and second.windows[0].coverage == 1.0
    assert second.windows[0].realized.roc_auc != first.windows[0].realized.roc_auc
    assert second.windows[1].labels == 0
    # no earlier run: "since the last run" starts with this window (the late half only)
    assert second.labels_since_last_run.labels == 300
    lag = second.windows[0].lag
    assert lag.median_seconds is not None and 0 < lag.median_seconds < 2 * 3600


def test_stored_estimate_shown_beside_realized_and_trust_judged(home, estimators):
    s_old, y_old = _calibrated(600, 3)
    old = _predictions(UNTIL - 2 * HOUR, s_old, "old")
    _write(home, "old", old)
    _write(home, "new", _predictions(UNTIL - HOUR, _calibrated(600, 4)[0], "new"))
    stored = estimate_performance(estimators.cbpe, s_old).metrics
    entry = StoredEstimate(champion_tag=TAG, start=UNTIL - 2 * HOUR, end=UNTIL - HOUR, rows=600,
                           metrics=stored)  # fmt: skip
    state = MonitorState(estimates=[entry])
    found = _gather(estimators, _labels(old, y_old, UNTIL - HOUR), state)
    window = found.windows[0]
    assert window.estimate_source == "stored" and window.estimated == stored
    assert window.trust is not None and window.trust.judged and not found.concept_drift
    assert found.windows[1].estimated is None  # the current window: its estimate is new
    assert found.estimate is not None and found.estimate.rows == 600


def test_concept_drift_flagged_when_labels_disagree_with_the_estimate(home, estimators):
    s_old, y_old = _calibrated(1_000, 5)
    old = _predictions(UNTIL - 2 * HOUR, s_old, "old")
    _write(home, "old", old)
    _write(home, "new", _predictions(UNTIL - HOUR, _calibrated(600, 6)[0], "new"))
    # the relationship changed: in the upper half of scores, labels became coin flips
    coins = np.random.default_rng(9).random(s_old.size) < 0.25
    flipped = np.where(s_old > np.median(s_old), coins, y_old).astype(float)
    found = _gather(estimators, _labels(old, flipped, UNTIL - HOUR))
    assert found.concept_drift and found.windows[0].estimate_source == "recomputed"
    verdict = judge(found, _champion(), PolicyConfig())
    assert verdict.retrain and any("concept drift" in r for r in verdict.reasons)
    assert any(r.startswith("realized roc_auc") for r in verdict.reasons), verdict.reasons


def test_other_models_predictions_do_not_count(home, estimators):
    s, y = _calibrated(400, 7)
    other = _predictions(UNTIL - HOUR, s, "x").with_columns(model_tag=pl.lit("m:0"))
    _write(home, "other", other)
    found = _gather(estimators, _labels(other, y, UNTIL))
    assert found.windows == [] and found.estimate is None


def test_horizon_reads_the_earlier_log_and_reuses_the_window_once(home, estimators):
    """The window's rows come from the caller, the horizon before it from the log: every
    champion prediction counted once, another model's rows in the window left out."""
    s_old, y_old = _calibrated(300, 3)
    s_new, y_new = _calibrated(400, 4)
    s_other, y_other = _calibrated(100, 5)
    old = _predictions(UNTIL - 2 * HOUR, s_old, "old")
    new = _predictions(UNTIL - HOUR, s_new, "new")
    other = _predictions(UNTIL - HOUR, s_other, "x").with_columns(model_tag=pl.lit("m:0"))
    for name, frame in (("old", old), ("new", new), ("other", other)):
        _write(home, name, frame)
    labels = pl.concat([_labels(old, y_old, UNTIL), _labels(new, y_new, UNTIL),
                        _labels(other, y_other, UNTIL)])  # fmt: skip
    found = _gather(estimators, labels)
    assert [(w.start, w.predictions, w.labels) for w in found.windows] == [
        (UNTIL - 2 * HOUR, 300, 300), (UNTIL - HOUR, 400, 400)]  # fmt: skip
    assert found.estimate is not None and found.estimate.rows == 400
    assert found.labels_since_last_run.labels == 700


def _evidence_with(estimators, estimate_auc: float | None, home):
    s, _ = _calibrated(600, 8)
    _write(home, "new", _predictions(UNTIL - HOUR, s, "new"))
    found = _gather(estimators, pl.DataFrame(schema={"request_id": pl.String,
                    "entity_id": pl.String, "label": pl.Float64,
                    "ts": pl.Datetime("us", "UTC")}))  # fmt: skip
    if estimate_auc is None:
        return found
    from dataclasses import replace

    auc = Estimate(estimate_auc, estimate_auc - 0.02, estimate_auc + 0.02, 0.01)
    metrics = BinaryMetrics(auc, None, None, None, None)
    return replace(found, estimate=replace(found.estimate, metrics=metrics))


def test_policy_estimated_loss_retrains_harmless_drift_does_not(home, estimators):
    base = estimators.baseline.roc_auc.value
    worse = judge(_evidence_with(estimators, base - 0.1, home), _champion(), PolicyConfig())
    assert worse.retrain and worse.reasons[0].startswith("estimated roc_auc")
    same = judge(_evidence_with(estimators, base, home), _champion(), PolicyConfig())
    assert not same.retrain and not same.input_drift_retrains
    assert judge(_evidence_with(estimators, base, home), _champion(),
                 PolicyConfig(input_drift="retrain")).input_drift_retrains  # fmt: skip
    off = PolicyConfig(retrain_on_estimated_loss=False)
    assert not judge(_evidence_with(estimators, base - 0.1, home), _champion(), off).retrain


def test_without_an_estimate_input_drift_retrains(home, estimators):
    from dataclasses import replace

    found = replace(_evidence_with(estimators, None, home), estimate=None)
    assert judge(found, _champion(), PolicyConfig()).input_drift_retrains


def _drifting(rows: int = 600) -> DriftResult:
    return DriftResult("tests", 0.9, 0.3, True, rows, [], None)


def test_harmless_drift_fires_a_report_only_event_and_the_estimate_is_stored(home, estimators):
    found = _evidence_with(estimators, estimators.baseline.roc_auc.value, home)
    verdict = judge(found, _champion(), PolicyConfig())
    perf = Performance(0, None, None, None, None, None, None, False, "no labels")
    config = DriftConfig(hysteresis_windows=1, cooldown_minutes=0)
    findings = window_findings(_drifting(), Quality(rows=600), perf, _champion(),
                               verdict=verdict, evidence=found)  # fmt: skip
    due = decide_window(findings, config, UNTIL)
    assert due.drift_fire and not due.drift_retrains and not due.performance_fire
    kept = load_state("m")
    assert [(e.start, e.end, e.rows) for e in kept.estimates] == [(UNTIL - HOUR, UNTIL, 600)]
    assert kept.last_retrain_requested_at is None
    # evidence of loss: the drift event itself asks for the retrain (one event, not two)
    worse = _evidence_with(estimators, estimators.baseline.roc_auc.value - 0.1, home)
    loss = judge(worse, _champion(), PolicyConfig())
    findings = window_findings(_drifting(), Quality(rows=600), perf, _champion(),
                               verdict=loss, evidence=worse)  # fmt: skip
    due = decide_window(findings, config, UNTIL + HOUR)
    assert due.drift_fire and due.drift_retrains and not due.performance_fire
    assert due.retrain_reasons and load_state("m").last_retrain_requested_at == UNTIL + HOUR


def test_multiclass_windows_are_scored_on_the_predicted_class(home):
    """A multiclass window's realized metric is the accuracy of its predicted class against
    the labels (logged as the class's index), with its interval; no label-rate drift."""
    from types import SimpleNamespace

    classes = ("bronze", "gold", "silver")
    rng = np.random.default_rng(5)
    n = 400
    predicted = rng.integers(0, 3, n)
    hit = rng.random(n) < 0.7  # about 70% right
    label = np.where(hit, predicted, (predicted + 1 + rng.integers(0, 2, n)) % 3)
    preds = _predictions(UNTIL - HOUR, rng.random(n), "mc").with_columns(
        predicted_class=pl.Series([classes[k] for k in predicted])
    )
    _write(home, "mc", preds)
    estimators = Estimators(TAG, "multiclass", 0.5, None, None, None, None, 0, 0, ())
    from tasks.predlog import load_predictions

    rows = load_predictions(UNTIL - HOUR, UNTIL)
    got = gather_evidence(
        rows=rows, labels=_labels(preds, label, UNTIL - HOUR / 2),
        bounds=Window(UNTIL - HOUR, UNTIL), estimators=estimators,
        dataset=SimpleNamespace(class_index={c: float(i) for i, c in enumerate(classes)}),
        quality=Quality(rows=rows.height),
        state=MonitorState(), config=EvidenceConfig(horizon_hours=1, estimate=False,
                                                    multivariate=False), reference=None,
    )  # fmt: skip
    (window,) = got.windows
    accuracy = window.realized.accuracy
    assert window.labels == n and accuracy.value == pytest.approx(hit.mean())
    assert accuracy.lower < accuracy.value < accuracy.upper
    assert window.label_rate is None and got.label_drift is None
    assert got.labels_since_last_run.metrics.accuracy.value == pytest.approx(hit.mean())
    from tasks.estimation.stats import metrics_from_json, metrics_to_json

    assert metrics_from_json(metrics_to_json(window.realized)) == window.realized
