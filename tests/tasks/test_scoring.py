"""Batch scoring: the service's validation and scoring path, applied to files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from driftloop.cli import build_app
from schemas import load_dataset
from tasks import registry
from tasks.features import build_features, to_matrix
from tasks.scoring import score_frame, validate_rows
from tasks.settings import Settings
from tests.support.models import save_tiny as save
from tests.support.models import tiny_models
from tests.support.telco import TELCO_CSV

DS = load_dataset("telco")


@pytest.fixture
def champion_home(home: Path) -> Settings:
    settings = Settings(home=home)
    settings.ensure_dirs()
    m = tiny_models()
    a = save(m.a, m.features, settings, "a")
    b = save(m.b, m.features, settings, "b")
    registry.set_alias("telco", registry.CHAMPION, a, settings=settings)
    registry.set_alias("telco", registry.CHALLENGER, b, settings=settings)
    return settings


def _raw(n: int = 60) -> pl.DataFrame:
    return pl.read_csv(TELCO_CSV, infer_schema=False).slice(3000, n)


def test_score_frame_equals_booster_and_decides_at_threshold(champion_home):
    m = tiny_models()
    model = registry.load_model("telco:champion", champion_home)
    out = score_frame(m.rows, model)
    expected = m.a.predict(to_matrix(build_features(m.rows, m.features)), num_threads=1)
    np.testing.assert_allclose(out.scores, expected, rtol=0, atol=1e-12)
    assert (out.decisions == (expected >= 0.4)).all()


def test_validate_rows_refuses_what_the_service_refuses():
    raw = _raw(6).with_columns(
        pl.Series("Contract", ["Weekly", *_raw(6)["Contract"][1:]]),
        pl.Series("tenure", ["1", "abc", "5", "5", "3", "7"]),
        pl.Series("TotalCharges", ["1.0", "2.0", " ", "inf", "3.5", "4.0"]),
    )
    checked = validate_rows(raw, DS)
    reasons = {(r["row"], r["column"], r["check"]) for r in checked.errors.to_dicts()}
    assert (0, "Contract", "literal_error") in reasons
    assert (1, "tenure", "type") in reasons
    assert (2, None, "total_charges_missing_only_when_new") in reasons
    assert (3, "TotalCharges", "finite_number") in reasons
    assert checked.valid.height == 2
    assert checked.valid.schema["tenure"] == pl.Int64
    with pytest.raises(ValueError, match="not in the telco contract: extra"):
        validate_rows(raw.with_columns(pl.lit("x").alias("extra")), DS)


def test_driftloop_score_cli_writes_scores_shadow_and_rejects(champion_home, tmp_path):
    m = tiny_models()
    raw = _raw(50)
    bad = raw.head(2).with_columns(pl.lit("Weekly").alias("Contract"))
    src = tmp_path / "in.csv"
    pl.concat([raw, bad]).write_csv(src)
    out = tmp_path / "scores.parquet"
    runner = CliRunner()
    res = runner.invoke(
        build_app(),
        ["score", str(src), "--out", str(out), "--shadow", "--json"],
        env={"DRIFTLOOP_HOME": str(champion_home.root)},
    )
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout)  # exactly one JSON object on stdout
    assert (result["rows"], result["scored"], result["rejected"]) == (52, 50, 2)
    assert result["model_tag"] == registry.get_alias("telco", "champion", champion_home)
    scored = pl.read_parquet(out)
    assert scored.columns[:9] == [
        "request_id", "entity_id", "ts", "model_tag", "score", "decision",
        "shadow_tag", "shadow_score", "latency_ms",
    ]  # fmt: skip
    typed = validate_rows(raw, DS).valid
    expected_a = m.a.predict(to_matrix(build_features(typed, m.features)), num_threads=1)
    expected_b = m.b.predict(to_matrix(build_features(typed, m.features)), num_threads=1)
    np.testing.assert_allclose(scored["score"].to_numpy(), expected_a, rtol=0, atol=1e-9)
    np.testing.assert_allclose(scored["shadow_score"].to_numpy(), expected_b, rtol=0, atol=1e-9)
    assert scored["entity_id"].to_list() == raw["customerID"].to_list()
    rejects = pl.read_parquet(result["rejects"])
    assert set(rejects["row"]) == {50, 51} and set(rejects["column"]) == {"Contract"}


def test_driftloop_score_cli_reports_a_missing_model(home, tmp_path):
    src = tmp_path / "in.csv"
    _raw(3).write_csv(src)
    res = CliRunner().invoke(
        build_app(),
        ["score", str(src), "--out", str(tmp_path / "o.parquet"), "--json"],
        env={"DRIFTLOOP_HOME": str(home)},
    )
    assert res.exit_code == 1 and "has no champion" in res.output
