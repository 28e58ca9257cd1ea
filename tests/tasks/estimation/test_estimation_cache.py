"""The champion's estimators saved beside its reference as JSON: read back, they estimate
exactly as the fitted ones; a changed sample, another format or a damaged file is a refit,
never a load."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from tasks.estimation.dle import dle_from_json, dle_to_json, estimate_loss, fit_dle
from tasks.estimation.domain import domain_drift
from tasks.monitoring import estimators as est_mod
from tasks.monitoring.window import Champion
from tasks.profiling import LABEL_COLUMN, SCORE_COLUMN, Reference

TAG = "synthetic:c1"


def _reference(tmp_path, rows, seed: int = 0) -> Reference:
    frame, p = rows(1_500, seed=seed)
    sample = frame.drop("y").with_columns(
        pl.Series(SCORE_COLUMN, p), pl.Series(LABEL_COLUMN, frame["y"].cast(pl.Float64))
    )
    path = tmp_path / "synthetic_c1.sample.parquet"
    sample.write_parquet(path)
    return Reference(TAG, tmp_path / "synthetic_c1.bin", path, {}, sample)


def _champion() -> Champion:
    return Champion("synthetic", TAG, {"roc_auc": 0.7}, None, 0.4, None)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, rows, synthetic) -> est_mod.Estimators:
    reference = _reference(tmp_path_factory.mktemp("fit"), rows)
    return est_mod.fit_estimators(reference, synthetic, _champion())


@pytest.fixture
def saved(tmp_path, rows, fitted):
    reference = _reference(tmp_path, rows)  # the sample the fit saw, in this test's folder
    return reference, fitted, est_mod.save_estimators(fitted, reference)


def test_read_back_estimators_estimate_exactly_as_fitted(saved, rows, synthetic) -> None:
    reference, fitted, path = saved
    assert path.name == "synthetic_c1.estimators.json"
    again = est_mod.read_estimators(reference, synthetic)
    assert again is not None and again.cbpe is not None and again.domain is not None
    window, p = rows(2_000, seed=9)
    frame = window.with_columns(pl.Series("score", p))
    assert est_mod.estimate(again, frame, synthetic) == est_mod.estimate(fitted, frame, synthetic)
    encoded = est_mod.encode(window, synthetic)
    assert domain_drift(again.domain, encoded) == domain_drift(fitted.domain, encoded)
    assert again.baseline == fitted.baseline and again.notes == fitted.notes
    assert np.array_equal(again.domain.rows, fitted.domain.rows)


def test_a_changed_sample_a_newer_format_or_a_damaged_file_is_not_loaded(
    saved, tmp_path, rows, synthetic
) -> None:
    reference, _, path = saved
    text = path.read_text()
    doc = json.loads(text)
    knots = doc["body"]["cbpe"]["calibrator"]
    damaged = dict(doc, body=dict(doc["body"], threshold=0.41)) if not knots["x"] else doc
    if knots["x"]:
        knots["y"][0] = knots["y"][0] + 0.01  # one changed number, checksum left as it was
    path.write_text(json.dumps(damaged))
    assert est_mod.read_estimators(reference, synthetic) is None
    path.write_text(json.dumps(dict(json.loads(text), format=est_mod.CACHE_FORMAT - 1)))
    assert est_mod.read_estimators(reference, synthetic) is None
    path.write_text(text[: len(text) // 2])  # truncated
    assert est_mod.read_estimators(reference, synthetic) is None
    path.write_text(text)
    assert est_mod.read_estimators(reference, synthetic) is not None
    other = _reference(tmp_path, rows, seed=1)  # same place, another sample
    assert est_mod.read_estimators(other, synthetic) is None


def test_load_uses_the_saved_fit_and_refits_what_it_cannot_read(saved, synthetic) -> None:
    reference, fitted, path = saved
    written = path.read_bytes()
    est_mod._FITTED.pop(TAG, None)  # as a new process
    try:
        assert est_mod.load_estimators(reference, synthetic, _champion()).baseline == (
            fitted.baseline
        )
        assert path.read_bytes() == written
        path.write_text("{")
        est_mod._FITTED.pop(TAG, None)
        refit = est_mod.load_estimators(reference, synthetic, _champion())
        assert refit.baseline == fitted.baseline and path.read_bytes() == written  # rewritten
    finally:
        est_mod._FITTED.pop(TAG, None)


def test_dle_round_trips_through_model_text() -> None:
    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(0, 1, 1_000), rng.normal(0, 1, 1_000)
    features, pred = pl.DataFrame({"x1": x1, "x2": x2}), 2 * x1 + x2
    y = pred + rng.normal(0, 0.3 + np.abs(x1))
    model = fit_dle(features, pred, y)
    again = dle_from_json(json.loads(json.dumps(dle_to_json(model))))
    assert estimate_loss(again, features, pred) == estimate_loss(model, features, pred)


def test_a_domain_classifier_calibrated_under_other_settings_is_refitted(saved, synthetic):
    from dataclasses import replace

    from tasks.estimation.domain import domain_from_json, domain_to_json

    reference, fitted, _ = saved
    doc = domain_to_json(fitted.domain)
    encoded = est_mod.encode(reference.sample, synthetic)
    assert domain_from_json(doc, encoded, fitted.domain.config).null_mean == (
        fitted.domain.null_mean
    )
    with pytest.raises(ValueError, match="other settings"):
        domain_from_json(doc, encoded, replace(fitted.domain.config, k_sigma=4.0))
