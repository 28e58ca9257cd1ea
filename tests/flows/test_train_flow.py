"""The train flow for real (Prefect server, Optuna on SQLite, BentoML store, W&B offline).

The acceptance run goes through the real CLI: ``driftloop train --dataset telco --trials 50
--json`` on the shipped data, once per module; the tests below check what it made.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from driftloop.cli import build_app
from flows.train import TrainConfig, train
from schemas import load_dataset
from tasks import registry, tracking
from tasks.evaluate import compute_metrics, label_vector
from tasks.ingest.snapshot import load_snapshot
from tasks.predict import score_frame
from tasks.settings import get_settings
from tasks.training.split import split_data
from tasks.training.storage import open_storage
from tests.support.artifacts import latest_artifacts, table_rows

pytestmark = pytest.mark.slow  # minutes long: xdist workers start it first (tests/conftest.py)

DS = load_dataset("telco")
AUC_FLOOR = 0.845


def _cli(*args: str) -> dict:
    result = CliRunner().invoke(build_app(), list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def telco_home(tmp_path_factory, prefect_harness):
    """One home, one real 50-trial CLI training on the shipped Telco data (W&B offline)."""
    home = tmp_path_factory.mktemp("train-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DRIFTLOOP_HOME", str(home))
        mp.setenv("WANDB_MODE", "offline")
        out = _cli("train", "--dataset", "telco", "--trials", "50", "--threads", "1", "--json")
        mp.setenv("WANDB_MODE", "disabled")
        yield home, out


@pytest.fixture
def in_home(telco_home, monkeypatch):
    monkeypatch.setenv("DRIFTLOOP_HOME", str(telco_home[0]))
    return telco_home[1]


def test_cli_train_beats_the_auc_floor_and_the_untuned_model(in_home) -> None:
    out = in_home
    for key in ("model_tag", "data_version", "metrics", "threshold", "wandb_run_dir"):
        assert out[key] is not None, key
    auc, base = out["metrics"]["roc_auc"], out["baseline_metrics"]["roc_auc"]
    print(f"test ROC AUC tuned {auc:.4f} vs untuned {base:.4f} on the same split")
    assert auc >= AUC_FLOOR
    assert auc > base  # the untuned LightGBM, same split, same seed
    assert out["alias"] == "champion"  # the first model becomes champion
    assert out["tuning"]["trials"] == 50 and out["tuning"]["pruned"] > 0
    assert 0 < out["threshold"] < 1 and out["expected_value_per_month"] > 0
    assert out["business"]["expected_value_per_month"] > out["business"]["expected_value_offer_all"]
    for key in ("pr_auc", "log_loss", "brier", "accuracy", "precision", "recall", "f1"):
        assert 0 <= out["metrics"][key] <= 1 or key == "log_loss"
    assert set(out["slices"]) == set(DS.segment_columns)
    assert out["slices"]["SeniorCitizen"]["gap"]["roc_auc"] is not None


def test_train_run_leaves_summary_metrics_and_card_in_the_ui(in_home) -> None:
    out = in_home
    found = latest_artifacts("train-telco", "train-telco-metrics", "train-telco-card")
    assert [found[k].type for k in sorted(found)] == ["markdown", "markdown", "table"]
    body = found["train-telco"].data
    assert f"Model `{out['model_tag']}` · data version `{out['data_version']}`" in body
    assert f"Threshold: {out['threshold']:.4g}" in body
    assert f"{out['expected_value_per_month']:.4g} per month" in body
    assert f"wandb sync {out['wandb_run_dir']}" in body
    rows = {r["metric"]: r for r in table_rows(found["train-telco-metrics"])}
    assert rows["roc_auc"]["model"] == out["metrics"]["roc_auc"]
    assert rows["roc_auc"]["baseline"] == out["baseline_metrics"]["roc_auc"]
    card = found["train-telco-card"].data
    assert out["model_tag"] in card and "Intended use" in card


def test_registered_model_reloads_and_reproduces_its_test_metrics(in_home) -> None:
    out = in_home
    model = registry.load_model("telco:champion")
    assert model.tag == out["model_tag"]
    meta = model.metadata
    assert meta["data_version"] == out["data_version"] and meta["schema_hash"] == DS.schema_hash
    assert meta["wandb_run_path"] and meta["git_sha"] and meta["params"]["num_threads"] == 1
    assert meta["train_wall_s"] > 0 and meta["peak_rss_mb"] > 0
    splits = split_data(load_snapshot(out["data_version"]), DS, seed=0)
    scores = score_frame(splits.test, model)
    again = compute_metrics(label_vector(splits.test, DS), scores, model.threshold, "binary")
    assert again["roc_auc"] == pytest.approx(out["metrics"]["roc_auc"], abs=1e-12)
    assert again["confusion"] == out["metrics"]["confusion"]
    card = (model.path / registry.CARD_FILE).read_text()
    assert out["model_tag"] in card and out["data_version"] in card
    assert "Intended use" in card and "SeniorCitizen" in card and "expected value" in card
    assert Path(out["reference_profile"]).exists()


def test_wandb_offline_run_holds_final_metrics_and_the_registry_tag(in_home) -> None:
    out = in_home
    run = tracking.read_offline_run(out["wandb_run_dir"])
    assert run.summary["model_tag"] == out["model_tag"]
    assert run.summary["metrics/roc_auc"] == pytest.approx(out["metrics"]["roc_auc"])
    assert run.summary["data_version"] == out["data_version"]
    assert run.config["data_version"] == out["data_version"] and run.config["git_sha"]
    trials = [h for h in run.history if "trial/number" in h]
    assert len(trials) == 50
    assert any("final/valid_auc" in h for h in run.history)


def test_customer_id_alone_never_changes_a_prediction(in_home) -> None:
    model = registry.load_model("telco:champion")
    frame = load_snapshot(in_home["data_version"]).head(500)
    renamed = frame.with_columns(pl.format("X-{}", pl.int_range(pl.len())).alias("customerID"))
    assert np.array_equal(score_frame(frame, model), score_frame(renamed, model))


def test_month_to_month_churns_more_than_two_year_all_else_equal(in_home) -> None:
    model = registry.load_model("telco:champion")
    frame = load_snapshot(in_home["data_version"])
    monthly = score_frame(frame.with_columns(Contract=pl.lit("Month-to-month")), model)
    two_year = score_frame(frame.with_columns(Contract=pl.lit("Two year")), model)
    assert monthly.mean() > two_year.mean() + 0.05


def test_second_training_is_a_warm_started_challenger_then_promote_and_rollback(in_home) -> None:
    import optuna

    first = in_home["model_tag"]
    out = _cli("train", "--dataset", "telco", "--trials", "3", "--seed", "1", "--json")
    assert out["alias"] == "challenger" and out["warm_start_from"] == first
    champion_params = registry.load_model(first).metadata["params"]
    storage = open_storage(get_settings().optuna_url)
    study = optuna.load_study(study_name=out["tuning"]["study_name"], storage=storage)
    trial0 = study.trials[0].params
    for key, value in trial0.items():
        assert value == pytest.approx(champion_params[key]), key
    listed = _cli("models", "list", "--json")["models"]
    assert {m["tag"]: m["aliases"] for m in listed}[out["model_tag"]] == ["challenger"]
    assert _cli("models", "promote", "telco", "--json")["champion"] == out["model_tag"]
    shown = _cli("models", "show", "telco:champion", "--json")
    assert shown["tag"] == out["model_tag"] and shown["metadata"]["data_version"]
    assert _cli("models", "rollback", "telco", "--json")["champion"] == first
    assert registry.get_alias("telco", registry.CHAMPION) == first


def test_same_data_seed_and_budget_give_the_same_model(home, prefect_harness, telco_csv) -> None:
    cfg = TrainConfig(data=str(telco_csv), trials=6, seed=7, warm_start=False, profile=False)
    a, b = train(config=cfg), train(config=cfg)
    assert a["model_tag"] != b["model_tag"] and a["params"] == b["params"]
    rows = load_snapshot(a["data_version"])
    pa = score_frame(rows, registry.load_model(a["model_tag"]))
    pb = score_frame(rows, registry.load_model(b["model_tag"]))
    assert np.array_equal(pa, pb)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda f: f.drop("Churn"), "target column 'Churn' is absent"),
        (lambda f: f.filter(pl.col("Churn") == "No"), "single class"),
        (lambda f: f.head(150), "150 rows, fewer than the configured minimum of 200"),
    ],
    ids=["no-target", "one-class", "too-few-rows"],
)
def test_bad_training_data_fails_clearly_before_registering(
    home, prefect_harness, tmp_path, telco_csv, mutate, message
) -> None:
    bad = tmp_path / "bad.csv"
    mutate(pl.read_csv(telco_csv, infer_schema=False)).write_csv(bad)
    result = CliRunner().invoke(
        build_app(), ["train", "--data", str(bad), "--trials", "2", "--json"]
    )
    assert result.exit_code == 1 and result.stdout == ""
    assert message in result.stderr
    assert registry.list_models() == [] and registry.read_index() == {}


REGRESSION_SCHEMA = """
import pandera.polars as pa
import polars as pl
from schemas.base import DatasetSpec


class House(pa.DataFrameModel):
    id: str
    area: pl.Float64 = pa.Field(ge=0)
    district: str = pa.Field(isin=["north", "south", "east"])
    price: pl.Float64


DATASET = DatasetSpec(
    name="house", model=House, target="price", task="regression", id_column="id",
    segment_columns=("district",),
)
"""


def test_regression_dataset_trains_through_the_same_flow(home, prefect_harness, tmp_path) -> None:
    module = tmp_path / "house.py"
    module.write_text(REGRESSION_SCHEMA)
    rng = np.random.default_rng(0)
    n = 600
    district = rng.choice(["north", "south", "east"], n)
    area = rng.uniform(30, 200, n)
    price = 2.0 * area + np.where(district == "south", 80.0, 0.0) + rng.normal(0, 10, n)
    csv = tmp_path / "house.csv"
    frame = {"id": [f"h{i}" for i in range(n)], "area": area, "district": district}
    pl.DataFrame({**frame, "price": price}).write_csv(csv)
    out = train(config=TrainConfig(dataset=str(module), data=str(csv), trials=4))
    assert out["alias"] == "champion" and out["threshold"] is None
    assert out["metrics"]["r2"] > 0.9 and "roc_auc" not in out["metrics"]
    assert set(out["slices"]["district"]["values"]) == {"north", "south", "east"}
    model = registry.load_model("house:champion")
    assert model.metadata["task"] == "regression"


def test_human_rendering_of_a_training_result(in_home, capsys) -> None:
    from driftloop.commands.training import _render_train

    _render_train(in_home)
    text = capsys.readouterr().out
    assert in_home["model_tag"] in text and "roc_auc" in text and "expected value" in text
