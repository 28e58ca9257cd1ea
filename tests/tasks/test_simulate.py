"""The drift simulator changes what it says it changes, on any contract-typed frame."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from driftloop.cli import build_app
from schemas import load_dataset
from tasks.ingest.compose import ingest_file, read_valid_rows
from tasks.ingest.table import DataFileError
from tasks.simulate import KINDS, DriftSpec, inject_drift

TELCO = load_dataset("telco")


@pytest.fixture(scope="module")
def telco(telco_csv: Path) -> pl.DataFrame:
    return read_valid_rows(telco_csv, TELCO).accepted


def _churn_rate(frame: pl.DataFrame) -> float:
    return (frame["Churn"] == "Yes").mean()


def test_covariate_shift_moves_numeric_features(telco: pl.DataFrame) -> None:
    drifted = inject_drift(telco, TELCO, DriftSpec("covariate", severity=1.0))
    assert drifted.columns == telco.columns and drifted.height == telco.height
    assert drifted["MonthlyCharges"].mean() > telco["MonthlyCharges"].mean() + 20
    first = TELCO.columns["gender"].categories[0]
    assert (drifted["gender"] == first).mean() > (telco["gender"] == first).mean() + 0.1


def test_prior_shift_raises_the_positive_rate(telco: pl.DataFrame) -> None:
    drifted = inject_drift(telco, TELCO, DriftSpec("prior", severity=1.0))
    assert _churn_rate(drifted) > _churn_rate(telco) + 0.2


def test_concept_drift_flips_labels_only_inside_the_rule(telco: pl.DataFrame) -> None:
    spec = DriftSpec("concept", severity=0.8, column="tenure")
    drifted = inject_drift(telco, TELCO, spec)
    changed = drifted["Churn"] != telco["Churn"]
    inside = telco["tenure"] > telco["tenure"].median()
    assert changed.filter(~inside).sum() == 0
    assert changed.filter(inside).mean() == pytest.approx(0.8, abs=0.05)
    assert drifted.drop("Churn").equals(telco.drop("Churn"))


def test_label_noise_keeps_the_base_rate_but_not_the_signal(telco: pl.DataFrame) -> None:
    drifted = inject_drift(telco, TELCO, DriftSpec("label_noise", seed=3))
    assert _churn_rate(drifted) == pytest.approx(_churn_rate(telco), abs=0.03)
    agree = (drifted["Churn"] == telco["Churn"]).mean()
    assert agree < 0.7  # about p^2 + (1-p)^2 = 0.61 for p = 0.27


def test_missing_burst(telco: pl.DataFrame) -> None:
    drifted = inject_drift(telco, TELCO, DriftSpec("missing", severity=0.3, column="tenure"))
    assert drifted["tenure"].null_count() / drifted.height == pytest.approx(0.3, abs=0.03)


def test_every_kind_is_deterministic_by_seed(telco: pl.DataFrame) -> None:
    for kind in KINDS:
        a = inject_drift(telco, TELCO, DriftSpec(kind, seed=7))
        b = inject_drift(telco, TELCO, DriftSpec(kind, seed=7))
        assert a.equals(b), kind


def test_schema_break_fails_ingest_clearly(telco_csv: Path, tmp_path: Path, home: Path) -> None:
    out = tmp_path / "broken.csv"
    result = CliRunner().invoke(
        build_app(),
        ["simulate", "schema_break", "--data", str(telco_csv), "--out", str(out), "--json"],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows_out"] == 7043
    with pytest.raises(DataFileError, match="missing required columns"):
        ingest_file(out, TELCO)


def test_unknown_kind_is_a_clear_error(telco_csv: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        build_app(), ["simulate", "tsunami", "--data", str(telco_csv), "--out", str(tmp_path / "x")]
    )
    assert result.exit_code == 1 and "unknown drift kind 'tsunami'" in result.stderr


def test_covariate_shift_keeps_rows_within_the_contract(telco: pl.DataFrame) -> None:
    """Shifting tenure of a new customer with no TotalCharges would break a cross-column rule:
    those rows keep their values, so drifted traffic is still valid traffic."""
    drifted = inject_drift(telco, TELCO, DriftSpec("covariate", severity=1.0))
    TELCO.model.validate(drifted, lazy=True)  # raises on any violation
    new = drifted.filter(pl.col("TotalCharges").is_null())
    assert new.height > 0 and (new["tenure"] == 0).all()
