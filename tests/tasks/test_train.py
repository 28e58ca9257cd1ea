"""Training tasks: data checks, splits, LightGBM fits (binary and regression), Optuna tuning."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandera.polars as pa
import polars as pl
import pytest

from schemas import load_dataset
from schemas.base import DatasetSpec
from tasks import train as T
from tasks.features import FeatureSpec
from tasks.ingest import parse, read, validate

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


class Toy(pa.DataFrameModel):
    id: str
    color: str = pa.Field(isin=["red", "green", "blue"])
    x: pl.Float64
    ts: pl.Datetime = pa.Field(nullable=True)
    y: pl.Float64


TOY_REG = DatasetSpec(name="toy", model=Toy, target="y", task="regression", id_column="id")
TOY_TIME = DatasetSpec(
    name="toy", model=Toy, target="y", task="regression", id_column="id", event_time="ts"
)


def toy_frame(n: int = 600, seed: int = 0) -> pl.DataFrame:
    """y = 3x + (+5 red, -5 green, +5 blue) + noise: the colour effect is non-monotone in code
    order, so one categorical split beats any numeric split on the code."""
    rng = np.random.default_rng(seed)
    color = rng.choice(["red", "green", "blue"], n)
    x = rng.normal(size=n)
    effect = np.where(color == "green", -5.0, 5.0)
    start = datetime(2026, 1, 1)
    return pl.DataFrame(
        {
            "id": [f"c{i}" for i in range(n)],
            "color": color,
            "x": x,
            "ts": [start + timedelta(hours=int(h)) for h in rng.permutation(n)],
            "y": 3 * x + effect + rng.normal(scale=0.5, size=n),
        }
    )


@pytest.fixture(scope="module")
def telco() -> pl.DataFrame:
    ds = load_dataset("telco")
    raw = read.read_table(Path("data/telco_churn.csv"), ds)
    parsed = parse.parse_table(raw, ds)
    return validate.split_rows(parsed, validate.validate_table(parsed, ds)).accepted


# --- data checks ------------------------------------------------------------------------


def test_check_refuses_missing_target_single_class_and_too_few_rows(telco) -> None:
    ds = load_dataset("telco")
    T.check_training_data(telco, ds, min_rows=200)  # the shipped data is fine
    with pytest.raises(T.TrainingDataError, match="no target column 'Churn'"):
        T.check_training_data(telco.drop("Churn"), ds, min_rows=200)
    with pytest.raises(T.TrainingDataError, match="single class"):
        T.check_training_data(telco.filter(pl.col("Churn") == "No"), ds, min_rows=200)
    with pytest.raises(T.TrainingDataError, match="150 rows, fewer than the configured minimum"):
        T.check_training_data(telco.head(150), ds, min_rows=200)
    with pytest.raises(T.TrainingDataError, match="constant"):
        T.check_training_data(toy_frame().with_columns(y=pl.lit(1.0)), TOY_REG, min_rows=10)


# --- splits -----------------------------------------------------------------------------


def test_stratified_split_is_seeded_disjoint_and_keeps_the_class_balance(telco) -> None:
    ds = load_dataset("telco")
    s = T.split_data(telco, ds, seed=3)
    assert isinstance(s, T.Splits)
    ids = [set(part["customerID"]) for part in s]
    assert sum(map(len, ids)) == telco.height and not (ids[0] & ids[1] or ids[1] & ids[2])
    assert abs(s.valid.height - 0.2 * telco.height) <= 2
    rate = (telco["Churn"] == "Yes").mean()
    for part in s:
        assert abs((part["Churn"] == "Yes").mean() - rate) < 0.002
    again, other = T.split_data(telco, ds, seed=3), T.split_data(telco, ds, seed=4)
    assert again.test["customerID"].to_list() == s.test["customerID"].to_list()
    assert other.test["customerID"].to_list() != s.test["customerID"].to_list()


def test_split_is_time_ordered_when_the_dataset_has_an_event_time() -> None:
    s = T.split_data(toy_frame(), TOY_TIME, seed=0)
    assert s.train["ts"].max() < s.valid["ts"].min()
    assert s.valid["ts"].max() < s.test["ts"].min()


# --- fitting ----------------------------------------------------------------------------


def test_regression_with_native_categoricals() -> None:
    fs = FeatureSpec.from_dataset(TOY_REG)
    assert fs.categorical_indices == [0]
    s = T.split_data(toy_frame(), TOY_REG, seed=0)
    train, valid, test = (T.to_xy(p, TOY_REG, fs) for p in s)
    params = {"num_leaves": 4, "min_child_samples": 5, "max_cat_to_onehot": 1}
    booster = T.fit_booster(params, train, valid, fs, task="regression", seed=0, num_threads=1)
    pred = T.predict(booster, test.X)
    r2 = 1 - np.mean((pred - test.y) ** 2) / np.var(test.y)
    assert r2 > 0.9
    splits = []

    def walk(node):
        if "split_feature" in node:
            splits.append((node["split_feature"], node["decision_type"]))
            walk(node["left_child"])
            walk(node["right_child"])

    for tree in booster.dump_model()["tree_info"]:
        walk(tree["tree_structure"])
    assert (0, "==") in splits  # colour split as a category set, not a threshold on its code


def test_binary_fit_handles_imbalance_and_beats_chance(telco) -> None:
    ds = load_dataset("telco")
    fs = FeatureSpec.from_dataset(ds)
    s = T.split_data(telco, ds, seed=0)
    train, valid, test = (T.to_xy(p, ds, fs) for p in s)
    plain = T.fit_booster({}, train, valid, fs, task="binary", seed=0, num_threads=1)
    weighted = T.fit_booster(
        {"scale_pos_weight": 2.8}, train, valid, fs, task="binary", seed=0, num_threads=1
    )
    # reweighting positives moves the mean score towards parity: imbalance is handled
    assert T.predict(weighted, test.X).mean() > T.predict(plain, test.X).mean() + 0.05
    assert plain.best_iteration < T.MAX_BOOST_ROUNDS  # early stopping on the valid split


def test_shared_datasets_give_the_same_booster_as_fresh_ones(telco) -> None:
    """Tuning bins train/valid once and reuses them across trials whose parameters differ."""
    ds = load_dataset("telco")
    fs = FeatureSpec.from_dataset(ds)
    s = T.split_data(telco, ds, seed=0)
    train, valid, test = (T.to_xy(p, ds, fs) for p in s)
    shared = T.make_datasets(train, valid, fs)
    trials = [
        {"num_leaves": 5, "min_child_samples": 200, "bagging_fraction": 0.7, "cat_smooth": 50.0},
        {"num_leaves": 31, "min_child_samples": 10, "feature_fraction": 0.5, "lambda_l2": 3.0},
    ]
    for params in trials:
        common = {"task": "binary", "seed": 0, "num_threads": 1}
        fresh = T.fit_booster(params, train, valid, fs, **common)
        reused = T.fit_booster(
            params, train, valid, fs, **common, datasets=shared, keep_training_booster=True
        )
        assert reused.best_iteration == fresh.best_iteration
        assert np.array_equal(T.predict(reused, test.X), T.predict(fresh, test.X))


# --- tuning -----------------------------------------------------------------------------


def _toy_xy():
    fs = FeatureSpec.from_dataset(TOY_REG)
    s = T.split_data(toy_frame(400), TOY_REG, seed=0)
    return T.to_xy(s.train, TOY_REG, fs), T.to_xy(s.valid, TOY_REG, fs), fs


def test_tuning_is_deterministic_and_starts_from_the_enqueued_params() -> None:
    train, valid, fs = _toy_xy()
    warm = {"learning_rate": 0.05, "num_leaves": 7, "min_child_samples": 12, "lambda_l2": 1.0}
    runs = [
        T.tune(
            train,
            valid,
            fs,
            task="regression",
            seed=5,
            num_threads=1,
            trials=6,
            timeout_s=None,
            storage=None,
            study_name=f"t{i}",
            warm_params=[warm],
        )  # fmt: skip
        for i in range(2)
    ]
    first = runs[0].trials[0]["params"]
    assert {k: first[k] for k in warm} == warm  # the rest of the first trial is sampled
    assert [t["value"] for t in runs[0].trials] == [t["value"] for t in runs[1].trials]
    assert runs[0].best_params == runs[1].best_params and runs[0].n_trials == 6


def test_tuning_reports_to_the_pruner(tmp_path) -> None:
    import optuna

    train, valid, fs = _toy_xy()
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    result = T.tune(
        train, valid, fs, task="regression", seed=0, num_threads=1, trials=4,
        timeout_s=None, storage=url, study_name="p",
    )  # fmt: skip
    study = optuna.load_study(study_name="p", storage=url)
    assert len(study.trials) == result.n_trials == 4
    steps = study.trials[0].intermediate_values
    assert steps and all(k + 1 in T.REPORT_AT for k in steps)


def test_study_on_postgresql_with_two_workers() -> None:
    import optuna
    import sqlalchemy

    try:
        sqlalchemy.create_engine(T._postgres_driver(PG_URL)).connect().close()
    except Exception as exc:  # the machine promises PostgreSQL; say so loudly if it is gone
        pytest.fail(f"PostgreSQL at {PG_URL} is not reachable: {exc}")
    train, valid, fs = _toy_xy()
    name = f"driftloop-test-{uuid.uuid4().hex[:8]}"
    try:
        result = T.tune(
            train, valid, fs, task="regression", seed=0, num_threads=1, trials=6,
            timeout_s=60, storage=PG_URL, study_name=name, n_jobs=2,
        )  # fmt: skip
        stored = optuna.load_study(study_name=name, storage=T.open_storage(PG_URL))
        assert len(stored.trials) == result.n_trials == 6
        assert {t.number for t in stored.trials} == set(range(6))
    finally:
        optuna.delete_study(study_name=name, storage=T.open_storage(PG_URL))
    assert name not in optuna.get_all_study_names(storage=T.open_storage(PG_URL))


def test_features_schema_types_the_feature_frame(telco) -> None:
    import pandera.errors

    from tasks.features import build_features, validate_features

    fs = FeatureSpec.from_dataset(load_dataset("telco"))
    built = build_features(telco, fs)
    assert validate_features(built, fs).shape == built.shape
    forged = built.with_columns(Contract=pl.lit(7.0))  # no such code in Contract's domain
    with pytest.raises(pandera.errors.SchemaErrors, match="Contract"):
        validate_features(forged, fs)


def test_continue_training_from_an_init_model() -> None:
    train, valid, fs = _toy_xy()
    common = {"task": "regression", "seed": 0, "num_threads": 1}
    first = T.fit_booster({}, train, valid, fs, **common, max_rounds=20, early_stopping_rounds=None)
    more = T.fit_booster(
        {}, train, valid, fs, **common, max_rounds=10, early_stopping_rounds=None, init_model=first
    )
    assert more.num_trees() == first.num_trees() + 10


def test_reference_is_a_held_out_sample_scored_once(telco) -> None:
    ds = load_dataset("telco")
    fs = FeatureSpec.from_dataset(ds)
    s = T.split_data(telco, ds, seed=0)
    train, valid, _ = (T.to_xy(p, ds, fs) for p in s)
    common = {"task": "binary", "seed": 0, "num_threads": 1}
    booster = T.fit_booster({}, train, valid, fs, **common, max_rounds=30)
    model = T.TrainedModel(booster, booster, T.base_params(**common), None, {}, 0)
    scored = T.score_splits(model, s, ds, fs, seed=0, reference_rows=500)
    ids = scored.reference[ds.id_column]
    assert scored.reference.height == len(scored.reference_scores) == 500
    assert not ids.is_in(s.train[ds.id_column].implode()).any()  # never a training row
    assert ids.is_in(s.valid[ds.id_column].implode()).any()
    assert ids.is_in(s.test[ds.id_column].implode()).any()
    again = T.predict(booster, T.to_xy(scored.reference, ds, fs).X)
    np.testing.assert_allclose(scored.reference_scores, again)  # each row's own score
    whole = T.score_splits(model, s, ds, fs, seed=0)  # fewer held-out rows than the bound
    assert whole.reference.height == s.valid.height + s.test.height
