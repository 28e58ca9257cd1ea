"""The drift simulator changes what it says it changes, on any contract-typed frame."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandera.polars as pa
import polars as pl
import pytest
from typer.testing import CliRunner

from driftloop.cli import build_app
from schemas import load_dataset
from schemas.base import DatasetSpec
from tasks.ingest.compose import ingest_file, read_valid_rows
from tasks.ingest.snapshot import write_table
from tasks.ingest.table import DataFileError
from tasks.simulate import KINDS, SCENARIOS, DriftSpec, inject_drift, scenario_windows

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


def test_none_reshuffles_rows_and_changes_nothing_else(telco: pl.DataFrame) -> None:
    same = inject_drift(telco, TELCO, DriftSpec("none", seed=1))
    assert not same.equals(telco)  # a new order
    assert same.sort("customerID").equals(telco.sort("customerID"))


def test_feature_shift_moves_one_feature_only(telco: pl.DataFrame) -> None:
    numeric = inject_drift(telco, TELCO, DriftSpec("feature_shift", severity=1.0, column="tenure"))
    assert numeric["tenure"].mean() > telco["tenure"].mean() + 15
    assert numeric.drop("tenure").equals(telco.drop("tenure"))
    TELCO.model.validate(numeric, lazy=True)
    cat = inject_drift(telco, TELCO, DriftSpec("feature_shift", severity=1.0, column="Contract"))
    first = TELCO.columns["Contract"].categories[0]
    assert (cat["Contract"] == first).mean() > (telco["Contract"] == first).mean() + 0.2
    assert cat.drop("Contract").equals(telco.drop("Contract"))


@pytest.mark.parametrize(
    ("severity", "column", "other"),
    [(0.3, "MonthlyCharges", "TotalCharges"), (1.0, "MonthlyCharges", "TotalCharges"),
     (1.0, "TotalCharges", "tenure")],  # TotalCharges has nulls: they stay where they are
)  # fmt: skip
def test_correlation_flip_keeps_every_marginal_exactly(
    telco: pl.DataFrame, severity: float, column: str, other: str
) -> None:
    spec = DriftSpec("correlation_flip", severity=severity, column=column, seed=2)
    flipped = inject_drift(telco, TELCO, spec)
    for col in telco.columns:  # every column holds the same values, in some order
        assert flipped[col].sort().equals(telco[col].sort()), col
    assert flipped.drop(column).equals(telco.drop(column))
    assert flipped[column].is_null().equals(telco[column].is_null())
    before = telco.select(pl.corr(column, other)).item()
    after = flipped.select(pl.corr(column, other)).item()
    assert after < before - 0.2 * severity
    if severity == 1.0:
        assert before > 0.5 and after < 0  # the sign flips
    TELCO.model.validate(flipped, lazy=True)


def test_scenario_windows_drift_only_from_the_given_window(telco: pl.DataFrame) -> None:
    spec = SCENARIOS["harmful_covariate"]
    windows = scenario_windows(telco, TELCO, spec, windows=4, rows=500, drift_from=2, seed=3)
    assert [w.height for w in windows] == [500] * 4
    # narrowed around MonthlyCharges' mean (its default column) from window 2 on only
    spreads = [w["MonthlyCharges"].std() for w in windows]
    assert 0.75 * min(spreads[:2]) > max(spreads[2:])
    again = scenario_windows(telco, TELCO, spec, windows=4, rows=500, drift_from=2, seed=3)
    assert all(a.equals(b) for a, b in zip(windows, again, strict=True))
    big = scenario_windows(telco, TELCO, SCENARIOS["no_change"], windows=1, rows=10_000)
    assert big[0].height == 10_000  # more rows than the pool: drawn with replacement


def test_every_scenario_applies_to_any_contract(telco: pl.DataFrame) -> None:
    for name, spec in SCENARIOS.items():
        (window,) = scenario_windows(telco, TELCO, spec, windows=1, rows=300, seed=4)
        assert window.height == 300, name


def test_tilt_and_narrow_select_rows_without_changing_any_row(telco: pl.DataFrame) -> None:
    """Pure covariate shift: every drifted row is an original row (P(label | inputs) kept)."""
    tenure = telco["tenure"].cast(pl.Float64)
    tilted = inject_drift(telco, TELCO, DriftSpec("tilt", severity=1.0, column="tenure"))
    narrowed = inject_drift(telco, TELCO, DriftSpec("narrow", severity=4.0, column="tenure"))
    assert tilted["tenure"].mean() > tenure.mean() + 0.5 * tenure.std()
    assert narrowed["tenure"].std() < 0.6 * tenure.std()
    assert abs(narrowed["tenure"].mean() - tenure.mean()) < 0.2 * tenure.std()
    ids = set(telco["customerID"])
    for drifted in (tilted, narrowed):
        assert drifted.columns == telco.columns and drifted.height == telco.height
        assert set(drifted["customerID"]) <= ids
        assert drifted.join(telco, on="customerID").filter(
            pl.col("Churn") != pl.col("Churn_right")).height == 0  # fmt: skip
    # a categorical column tilts towards its first category
    first = TELCO.columns["gender"].categories[0]
    toward = inject_drift(telco, TELCO, DriftSpec("tilt", severity=1.0, column="gender"))
    assert (toward["gender"] == first).mean() > (telco["gender"] == first).mean() + 0.2


def test_a_tilt_within_a_column_keeps_that_column_and_moves_its_own(telco: pl.DataFrame) -> None:
    """``within``: the weights average 1 in every decile of that column (its distribution is
    kept in expectation), and the tilted column still moves."""
    from tasks.simulate import WITHIN_BINS, tilt_weights

    spec = DriftSpec("tilt", severity=0.5, column="gender", within="MonthlyCharges")
    w = tilt_weights(telco, TELCO, spec)
    charges = telco["MonthlyCharges"].to_numpy()
    edges = np.quantile(charges, np.linspace(0, 1, WITHIN_BINS + 1)[1:-1])
    group = np.searchsorted(edges, charges, side="right")
    assert np.allclose(np.bincount(group, weights=w) / np.bincount(group), 1.0)
    first = (telco["gender"] == TELCO.columns["gender"].categories[0]).to_numpy()
    assert np.average(first, weights=w) > first.mean() + 0.1
    tilted = inject_drift(telco, TELCO, spec)
    assert tilted["gender"].eq(TELCO.columns["gender"].categories[0]).mean() > first.mean() + 0.08
    assert abs(tilted["MonthlyCharges"].mean() - charges.mean()) < 0.05 * charges.std()


class _Tier(pa.DataFrameModel):
    x: pl.Float64 = pa.Field()
    tier: str = pa.Field(isin=["bronze", "gold", "silver"])


class _Price(pa.DataFrameModel):
    x: pl.Float64 = pa.Field()
    price: pl.Float64 = pa.Field(ge=0)


TIERS = DatasetSpec(name="tiers", model=_Tier, target="tier", task="multiclass",
                    classes=("bronze", "gold", "silver"))  # fmt: skip
PRICES = DatasetSpec(name="prices", model=_Price, target="price", task="regression")


def _rows(n: int = 4000) -> pl.DataFrame:
    rng = np.random.default_rng(1)
    x = rng.normal(size=n)
    tier = np.asarray(["bronze", "gold", "silver"])[np.digitize(x, [-1.0, 0.3])]
    return pl.DataFrame({"x": x, "tier": tier, "price": 50 + 10 * x + rng.normal(size=n)})


def test_label_kinds_work_on_multiclass_and_regression_targets() -> None:
    """concept, prior and label_noise on a multiclass and a regression contract (they once
    needed a binary dataset: ``driftloop simulate concept`` failed with a TypeError)."""
    rows = _rows()
    tiers, prices = rows.select("x", "tier"), rows.select("x", "price")
    upper = (rows["x"] > rows["x"].median()).to_numpy()
    moved = inject_drift(tiers, TIERS, DriftSpec("concept", severity=1.0))
    changed = (moved["tier"] != tiers["tier"]).to_numpy()
    assert changed[upper].all() and not changed[~upper].any()  # every top-half label, only those
    step = {"bronze": "gold", "gold": "silver", "silver": "bronze"}
    assert moved["tier"].to_list() == [step[t] if u else t for t, u in
                                       zip(tiers["tier"], upper, strict=True)]  # fmt: skip
    mirrored = inject_drift(prices, PRICES, DriftSpec("concept", severity=1.0))
    mean = prices["price"].mean()
    assert np.allclose(
        mirrored["price"].to_numpy()[upper], 2 * mean - prices["price"].to_numpy()[upper]
    )
    assert (
        mirrored["price"].to_numpy()[~upper].tolist() == prices["price"].to_numpy()[~upper].tolist()
    )
    rarest = tiers["tier"].value_counts(sort=True)["tier"][-1]
    prior = inject_drift(tiers, TIERS, DriftSpec("prior", severity=1.0))
    assert (prior["tier"] == rarest).mean() > (tiers["tier"] == rarest).mean() + 0.05
    high = inject_drift(prices, PRICES, DriftSpec("prior", severity=1.0))
    assert high["price"].mean() > prices["price"].mean() + 1
    noisy = inject_drift(tiers, TIERS, DriftSpec("label_noise", seed=2))
    assert sorted(noisy["tier"].to_list()) == sorted(tiers["tier"].to_list())
    assert (noisy["tier"] == tiers["tier"]).mean() < 0.6
    shuffled = inject_drift(prices, PRICES, DriftSpec("label_noise", seed=2))
    assert abs(np.corrcoef(shuffled["x"], shuffled["price"])[0, 1]) < 0.1


def test_a_drifted_copy_is_written_in_the_contracts_delimiter(tmp_path: Path) -> None:
    """`driftloop simulate` writes its copy as the contract reads it (a `;` dataset's copy was
    written with `,` and could not be ingested)."""
    semicolon = replace(TIERS, delimiter=";")
    rows = _rows(50).select("x", "tier")
    path = write_table(inject_drift(rows, semicolon, DriftSpec("concept")), tmp_path / "d.csv",
                       delimiter=semicolon.delimiter)  # fmt: skip
    assert path.read_text().splitlines()[0] == "x;tier"
    assert read_valid_rows(path, semicolon).accepted.height == 50
