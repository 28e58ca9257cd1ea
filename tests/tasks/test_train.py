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
from tasks.features import FeatureSpec
from tasks.ingest import parse, read, validate
from tasks.training import fit, model, space, split, storage, tune
from tasks.training.fit import FitData

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
    split.check_training_data(telco, ds, min_rows=200)  # the shipped data is fine
    with pytest.raises(split.TrainingDataError, match="no target column 'Churn'"):
        split.check_training_data(telco.drop("Churn"), ds, min_rows=200)
    with pytest.raises(split.TrainingDataError, match="single class"):
        split.check_training_data(telco.filter(pl.col("Churn") == "No"), ds, min_rows=200)
    with pytest.raises(
        split.TrainingDataError, match="150 rows, fewer than the configured minimum"
    ):
        split.check_training_data(telco.head(150), ds, min_rows=200)
    with pytest.raises(split.TrainingDataError, match="constant"):
        split.check_training_data(toy_frame().with_columns(y=pl.lit(1.0)), TOY_REG, min_rows=10)


# --- splits -----------------------------------------------------------------------------


def test_stratified_split_is_seeded_disjoint_and_keeps_the_class_balance(telco) -> None:
    ds = load_dataset("telco")
    s = split.split_data(telco, ds, seed=3)
    assert isinstance(s, split.Splits)
    ids = [set(part["customerID"]) for part in s]
    assert sum(map(len, ids)) == telco.height and not (ids[0] & ids[1] or ids[1] & ids[2])
    assert abs(s.valid.height - 0.2 * telco.height) <= 2
    rate = (telco["Churn"] == "Yes").mean()
    for part in s:
        assert abs((part["Churn"] == "Yes").mean() - rate) < 0.002
    again, other = split.split_data(telco, ds, seed=3), split.split_data(telco, ds, seed=4)
    assert again.test["customerID"].to_list() == s.test["customerID"].to_list()
    assert other.test["customerID"].to_list() != s.test["customerID"].to_list()


def test_split_is_time_ordered_when_the_dataset_has_an_event_time() -> None:
    s = split.split_data(toy_frame(), TOY_TIME, seed=0)
    assert s.train["ts"].max() < s.valid["ts"].min()
    assert s.valid["ts"].max() < s.test["ts"].min()


# --- fitting ----------------------------------------------------------------------------


def test_regression_with_native_categoricals() -> None:
    fs = FeatureSpec.from_dataset(TOY_REG)
    assert fs.categorical_indices == [0]
    s = split.split_data(toy_frame(), TOY_REG, seed=0)
    train, valid, test = (split.to_xy(p, TOY_REG, fs) for p in s)
    params = {"num_leaves": 4, "min_child_samples": 5, "max_cat_to_onehot": 1}
    fitdata = FitData(train, valid, fs, task="regression", seed=0, num_threads=1)
    booster = fit.fit_booster(params, fitdata)
    pred = fit.predict(booster, test.X)
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
    s = split.split_data(telco, ds, seed=0)
    train, valid, test = (split.to_xy(p, ds, fs) for p in s)
    fitdata = FitData(train, valid, fs, task="binary", seed=0, num_threads=1)
    plain = fit.fit_booster({}, fitdata)
    weighted = fit.fit_booster({"scale_pos_weight": 2.8}, fitdata)
    # reweighting positives moves the mean score towards parity: imbalance is handled
    assert fit.predict(weighted, test.X).mean() > fit.predict(plain, test.X).mean() + 0.05
    assert plain.best_iteration < fit.MAX_BOOST_ROUNDS  # early stopping on the valid split


def test_shared_datasets_give_the_same_booster_as_fresh_ones(telco) -> None:
    """Tuning bins train/valid once and reuses them across trials whose parameters differ."""
    ds = load_dataset("telco")
    fs = FeatureSpec.from_dataset(ds)
    s = split.split_data(telco, ds, seed=0)
    train, valid, test = (split.to_xy(p, ds, fs) for p in s)
    fitdata = FitData(train, valid, fs, task="binary", seed=0, num_threads=1)
    shared = fit.make_datasets(fitdata)
    trials = [
        {"num_leaves": 5, "min_child_samples": 200, "bagging_fraction": 0.7, "cat_smooth": 50.0},
        {"num_leaves": 31, "min_child_samples": 10, "feature_fraction": 0.5, "lambda_l2": 3.0},
    ]
    for params in trials:
        fresh = fit.fit_booster(params, fitdata)
        reused = fit.fit_booster(params, fitdata, datasets=shared, keep_training_booster=True)
        assert reused.best_iteration == fresh.best_iteration
        assert np.array_equal(fit.predict(reused, test.X), fit.predict(fresh, test.X))


# --- tuning -----------------------------------------------------------------------------


def _toy_fitdata(seed: int = 0) -> FitData:
    fs = FeatureSpec.from_dataset(TOY_REG)
    s = split.split_data(toy_frame(400), TOY_REG, seed=0)
    train, valid = split.to_xy(s.train, TOY_REG, fs), split.to_xy(s.valid, TOY_REG, fs)
    return FitData(train, valid, fs, task="regression", seed=seed, num_threads=1)


def test_tuning_is_deterministic_and_starts_from_the_enqueued_params() -> None:
    warm = {"learning_rate": 0.05, "num_leaves": 7, "min_child_samples": 12, "lambda_l2": 1.0}
    runs = [
        tune.tune(
            _toy_fitdata(seed=5),
            trials=6,
            timeout_s=None,
            storage=None,
            study_name=f"t{i}",
            warm_params=[warm],
        )
        for i in range(2)
    ]
    first = runs[0].trials[0]["params"]
    assert {k: first[k] for k in warm} == warm  # the rest of the first trial is sampled
    assert [t["value"] for t in runs[0].trials] == [t["value"] for t in runs[1].trials]
    assert runs[0].best_params == runs[1].best_params and runs[0].n_trials == 6


def test_search_space_is_one_definition_for_suggesting_clipping_and_defaults() -> None:
    import optuna
    from optuna.distributions import FloatDistribution, IntDistribution

    imbalance = 3.0
    for task in ("binary", "regression"):
        trial = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0)).ask()
        params = space.suggest_params(trial, task, imbalance)
        assert list(params) == [
            n for n, d in space.SPACE.items() if task == "binary" or not d.binary_only
        ]
        for name in params:
            dim = space.SPACE[name]
            kind = IntDistribution if dim.integer else FloatDistribution
            low, high = dim.bounds(imbalance)
            assert trial.distributions[name] == kind(low, high, log=dim.log), name
        assert space.in_space(params, imbalance) == params  # a suggestion is inside the bounds
    clipped = space.in_space({"num_leaves": 400.0, "lambda_l2": 0.0, "scale_pos_weight": 9.0,
                              "learning_rate": None, "other": 1}, imbalance)  # fmt: skip
    assert clipped == {"num_leaves": 32, "lambda_l2": 1e-3, "scale_pos_weight": imbalance}
    assert isinstance(clipped["num_leaves"], int)
    defaults = space.default_search_params()  # LightGBM's own defaults, unclipped
    assert defaults["num_leaves"] == 31 and defaults["lambda_l2"] == 0.0
    assert defaults.keys() == space.SPACE.keys()


def test_train_model_starts_from_the_warm_params_then_lightgbm_defaults() -> None:
    fs = FeatureSpec.from_dataset(TOY_REG)
    splits = split.split_data(toy_frame(400), TOY_REG, seed=0)
    warm = {"learning_rate": 0.05, "num_leaves": 7, "min_child_samples": 12, "lambda_l2": 1.0}
    options = tune.TuneOptions(trials=3, timeout_s=None, seed=0, num_threads=1, storage=None,
                               study_name="warm", n_jobs=1, pruning=True)  # fmt: skip
    trained = model.train_model(splits, TOY_REG, fs, options, warm_params=[warm])
    first, second = (t["params"] for t in trained.tuning.trials[:2])
    assert {k: first[k] for k in warm} == warm
    defaults = space.in_space(space.default_search_params(), 1.0)
    assert second == {k: defaults[k] for k in second}  # every searched key: the defaults
    assert trained.params["objective"] == "regression" and trained.best_iteration > 0


def test_tuning_reports_to_the_pruner(tmp_path) -> None:
    import optuna

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    result = tune.tune(_toy_fitdata(), trials=4, timeout_s=None, storage=url, study_name="p")
    study = optuna.load_study(study_name="p", storage=url)
    assert len(study.trials) == result.n_trials == 4
    steps = study.trials[0].intermediate_values
    assert steps and all(k + 1 in tune.REPORT_AT for k in steps)


def test_study_on_postgresql_with_two_workers() -> None:
    import optuna
    import sqlalchemy

    try:
        sqlalchemy.create_engine(storage._postgres_driver(PG_URL)).connect().close()
    except Exception as exc:  # the machine promises PostgreSQL; say so loudly if it is gone
        pytest.fail(f"PostgreSQL at {PG_URL} is not reachable: {exc}")
    name = f"driftloop-test-{uuid.uuid4().hex[:8]}"
    try:
        result = tune.tune(
            _toy_fitdata(), trials=6, timeout_s=60, storage=PG_URL, study_name=name, n_jobs=2
        )
        stored = optuna.load_study(study_name=name, storage=storage.open_storage(PG_URL))
        assert len(stored.trials) == result.n_trials == 6
        assert {t.number for t in stored.trials} == set(range(6))
    finally:
        optuna.delete_study(study_name=name, storage=storage.open_storage(PG_URL))
    assert name not in optuna.get_all_study_names(storage=storage.open_storage(PG_URL))


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
    fitdata = _toy_fitdata()
    first = fit.fit_booster({}, fitdata, max_rounds=20, early_stopping_rounds=None)
    more = fit.fit_booster({}, fitdata, max_rounds=10, early_stopping_rounds=None, init_model=first)
    assert more.num_trees() == first.num_trees() + 10


def test_reference_is_a_held_out_sample_scored_once(telco) -> None:
    ds = load_dataset("telco")
    fs = FeatureSpec.from_dataset(ds)
    s = split.split_data(telco, ds, seed=0)
    train, valid, _ = (split.to_xy(p, ds, fs) for p in s)
    fitdata = FitData(train, valid, fs, task="binary", seed=0, num_threads=1)
    booster = fit.fit_booster({}, fitdata, max_rounds=30)
    trained = model.TrainedModel(booster, booster, fitdata.base_params(), None, {}, 0)
    scored = model.score_splits(trained, s, ds, fs, seed=0, reference_rows=500)
    ids = scored.reference[ds.id_column]
    assert scored.reference.height == len(scored.reference_scores) == 500
    assert not ids.is_in(s.train[ds.id_column].implode()).any()  # never a training row
    assert ids.is_in(s.valid[ds.id_column].implode()).any()
    assert ids.is_in(s.test[ds.id_column].implode()).any()
    again = fit.predict(booster, split.to_xy(scored.reference, ds, fs).X)
    np.testing.assert_allclose(scored.reference_scores, again)  # each row's own score
    whole = model.score_splits(trained, s, ds, fs, seed=0)  # fewer held-out rows than the bound
    assert whole.reference.height == s.valid.height + s.test.height
