"""Batch scoring: the service's validation and scoring path, applied to files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandera.polars as pa
import polars as pl
import pytest
from typer.testing import CliRunner

from driftloop.cli import build_app
from schemas import load_dataset
from schemas.base import DatasetSpec
from tasks import registry
from tasks.features import build_features, to_matrix
from tasks.predict import score_frame
from tasks.scoring import decide, validate_rows
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
    scores = score_frame(m.rows, model)
    expected = m.a.predict(to_matrix(build_features(m.rows, m.features)), num_threads=1)
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-12)
    assert (decide(scores, model) == (expected >= 0.4)).all()


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
    assert (3, "TotalCharges", "type") in reasons  # ingest's parser: inf is not a number
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


class _Kinds(pa.DataFrameModel):
    flag: pl.Boolean = pa.Field(nullable=True)
    day: pl.Date = pa.Field(nullable=True)
    at: pl.Datetime = pa.Field(nullable=True)
    x: pl.Float64 = pa.Field(nullable=True)
    n: pl.Int64 = pa.Field(nullable=True)
    label: pl.Int64 = pa.Field(isin=[0, 1])


KINDS = DatasetSpec(name="kinds", model=_Kinds, target="label", positive_class=1)
KIND_ROWS = {  # rows 7-9 hold the values neither path may take
    "flag": ["true", "False", "YES", "n", " t ", "0", "1", "maybe", "true", "no"],
    "day": ["2024-01-02", "2024-12-31", "", "?", " 2024-03-01 ", "NA", "2024-02-29",
            "2024-01-02", "2024-02-30", "2024-01-02"],
    "at": ["2024-01-02 03:04:05", "2024-06-30 23:59:59", "NA", "2024-01-02 00:00:00", "",
           "None", "2024-02-29 12:00:00", "2024-01-02 03:04:05", "2024-01-02 03:04:05", "later"],
    "x": ["1.5", " 2 ", "1e3", "NaN", "null", "-2.5", "", "1", "inf", "-inf"],
    "n": ["3", "3.0", "-0", " 7 ", "?", "9007199254740993", "", "1", "3.5", "1"],
    "label": ["0", "1", "0", "1", "0", "1", "0", "1", "0", "1"],
}  # fmt: skip


def test_ingest_and_scoring_parse_the_same_strings_to_the_same_values(tmp_path):
    """Booleans, dates, datetimes, inf and null markers: one parser for both paths."""
    from tasks.ingest.parse import parse_table
    from tasks.ingest.read import read_table
    from tasks.scoring import read_input

    path = tmp_path / "kinds.csv"
    pl.DataFrame(KIND_ROWS).write_csv(path)
    parsed = parse_table(read_table(path, KINDS), KINDS)
    checked = validate_rows(read_input(path), KINDS)
    inputs = ["flag", "day", "at", "x", "n"]
    ingest_bad = set(parsed.failures.select("row", "column").iter_rows())
    scoring_bad = {(e["row"], e["column"]) for e in checked.errors.to_dicts()}
    assert ingest_bad == scoring_bad == {
        (7, "flag"), (8, "day"), (8, "x"), (8, "n"), (9, "at"), (9, "x")
    }  # fmt: skip
    assert set(checked.errors["check"]) == {"type"}
    ingest_good = parsed.frame.head(7).select(inputs)
    assert checked.valid.select(inputs).equals(ingest_good)
    assert ingest_good["flag"].to_list() == [True, False, True, False, True, False, True]
    assert ingest_good["x"].to_list() == [1.5, 2.0, 1000.0, None, None, -2.5, None]
    assert ingest_good["n"].to_list() == [3, 3, 0, 7, None, 9007199254740993, None]
    assert ingest_good["day"].null_count() == 3 and ingest_good["at"].null_count() == 3
