"""Split, fit and tune a LightGBM model on a dataset's contract-typed frame.

Plain functions: :func:`check_training_data` refuses unusable data before any work,
:func:`split_data` makes seeded stratified (or time-ordered) :class:`Splits`,
:func:`fit_booster` trains with early stopping on the valid split and native categoricals,
:func:`tune` runs an Optuna TPE study with pruning under a trial and wall-time budget.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import lightgbm as lgb
import numpy as np
import polars as pl

from schemas.base import DatasetSpec
from tasks.evaluate import label_vector
from tasks.features import FeatureSpec, build_features, to_matrix, validate_features

VALID_METRIC = {"binary": "auc", "regression": "l2"}
DIRECTION = {"binary": "maximize", "regression": "minimize"}
EARLY_STOPPING_ROUNDS = 50
MAX_BOOST_ROUNDS = 2000
DEFAULT_BOOST_ROUNDS = 100  # LightGBM's own default, for the untuned baseline
PRUNER = "median"
PRUNER_STARTUP_TRIALS = 5
PRUNER_WARMUP_STEPS = 20
# Iterations after which a trial reports its valid metric to the pruner: each report is a
# storage write plus a read of all trials, so few of them, doubling like successive-halving rungs.
REPORT_AT = (25, 50, 100, 200, 400, 800, 1600)
_REPO = Path(__file__).resolve().parents[1]


class TrainingDataError(ValueError):
    """The training data cannot make a model (no target, one class, too few rows...)."""


class Splits(NamedTuple):
    train: pl.DataFrame
    valid: pl.DataFrame
    test: pl.DataFrame


class XY(NamedTuple):
    """A split as LightGBM sees it: feature matrix and label vector."""

    X: np.ndarray
    y: np.ndarray


@dataclass
class TuneResult:
    best_params: dict[str, Any]
    best_value: float
    best_trial: int
    n_trials: int
    n_complete: int
    n_pruned: int
    study_name: str
    wall_s: float
    trials: list[dict[str, Any]] = field(default_factory=list)


# --- data checks and splits -------------------------------------------------------------


def check_training_data(frame: pl.DataFrame, dataset: DatasetSpec, min_rows: int) -> None:
    """Raise :class:`TrainingDataError` naming the problem if ``frame`` cannot train a model."""
    if dataset.target not in frame.columns:
        raise TrainingDataError(
            f"training data has no target column {dataset.target!r} "
            f"(dataset {dataset.name!r}; columns: {', '.join(frame.columns)})"
        )
    if frame.height < min_rows:
        raise TrainingDataError(
            f"training data has {frame.height} rows, fewer than the configured minimum "
            f"of {min_rows} (min_rows)"
        )
    missing = [c for c in dataset.feature_columns if c not in frame.columns]
    if missing:
        raise TrainingDataError(f"training data lacks feature columns: {', '.join(missing)}")
    try:
        y = label_vector(frame, dataset)
    except ValueError as exc:
        raise TrainingDataError(f"training data: {exc}") from None
    if dataset.task == "binary":
        n_pos = int(y.sum())
        if n_pos == 0 or n_pos == len(y):
            which = "every" if n_pos else "no"
            raise TrainingDataError(
                f"training data has a single class in {dataset.target!r} ({which} row is the "
                f"positive class {dataset.positive_class!r}); a binary model needs both classes"
            )
    elif np.unique(y).size < 2:
        raise TrainingDataError(f"training data target {dataset.target!r} is constant")


def split_data(
    frame: pl.DataFrame,
    dataset: DatasetSpec,
    seed: int,
    valid_fraction: float = 0.2,
    test_fraction: float = 0.2,
) -> Splits:
    """Seeded train/valid/test: time-ordered (oldest train, newest test) when the dataset has
    an event time, else stratified on the label (binary) or on label quantiles (regression)."""
    n = frame.height
    if dataset.event_time:
        order = frame[dataset.event_time].arg_sort().to_numpy()
    else:
        strata = _strata(label_vector(frame, dataset), dataset.task)
        order = _stratified_order(strata, seed, valid_fraction, test_fraction)
    n_test = max(1, round(n * test_fraction)) if test_fraction > 0 else 0
    n_valid = max(1, round(n * valid_fraction))
    n_train = n - n_test - n_valid
    part = np.empty(n, dtype=np.int8)  # rows keep the frame's order inside each split:
    part[order[:n_train]] = 0  # a filter copies sequentially, a gather at random indices
    part[order[n_train : n_train + n_valid]] = 1  # costs ~3x more (0.8 s on 1M rows)
    part[order[n_train + n_valid :]] = 2
    return Splits(*(frame.filter(pl.Series(part == k)) for k in range(3)))


def _strata(y: np.ndarray, task: str, bins: int = 10) -> np.ndarray:
    if task == "binary":
        return y.astype(int)
    edges = np.quantile(y, np.linspace(0, 1, bins + 1)[1:-1])
    return np.searchsorted(edges, y)


def _stratified_order(
    strata: np.ndarray, seed: int, valid_fraction: float, test_fraction: float
) -> np.ndarray:
    """Row order [train..., valid..., test...] with each stratum cut in the same proportions."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "valid": [], "test": []}
    for s in np.unique(strata):
        idx = rng.permutation(np.flatnonzero(strata == s))
        n_test = round(len(idx) * test_fraction)
        n_valid = round(len(idx) * valid_fraction)
        parts["test"].append(idx[:n_test])
        parts["valid"].append(idx[n_test : n_test + n_valid])
        parts["train"].append(idx[n_test + n_valid :])
    return np.concatenate([rng.permutation(np.concatenate(parts[k])) for k in parts])


def to_xy(
    frame: pl.DataFrame, dataset: DatasetSpec, features: FeatureSpec, validate: bool = False
) -> XY:
    """Features (the shared feature function, checked against the features schema when
    ``validate``) and labels of one split."""
    built = build_features(frame, features)
    if validate:
        validate_features(built, features)
    return XY(to_matrix(built), label_vector(frame, dataset))


# --- parameters -------------------------------------------------------------------------


def base_params(task: str, seed: int, num_threads: int) -> dict[str, Any]:
    """Fixed parameters of every fit: objective, metric, determinism, threads."""
    return {
        "objective": "binary" if task == "binary" else "regression",
        "metric": VALID_METRIC[task],
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": num_threads,
        "verbosity": -1,
    }


def default_search_params() -> dict[str, Any]:
    """LightGBM's defaults expressed in the search space: the first trial when no champion
    exists, so tuning can only match or beat the untuned model on the valid split."""
    return {
        "learning_rate": 0.1,
        "num_leaves": 31,
        "min_child_samples": 20,
        "feature_fraction": 1.0,
        "bagging_fraction": 1.0,
        "lambda_l2": 0.0,
        "cat_smooth": 10.0,
        "scale_pos_weight": 1.0,
    }


def suggest_params(trial: Any, task: str, imbalance: float) -> dict[str, Any]:
    """The search space. ``imbalance`` (negatives / positives) bounds ``scale_pos_weight``:
    class imbalance is handled by letting the tuner reweight positives up to parity."""
    params = {
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.1, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 2, 32, log=True),
        "min_child_samples": trial.suggest_int("min_child_samples", 10, 300, log=True),
        "feature_fraction": trial.suggest_float("feature_fraction", 0.4, 1.0),
        "bagging_fraction": trial.suggest_float("bagging_fraction", 0.5, 1.0),
        "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 100.0, log=True),
        "cat_smooth": trial.suggest_float("cat_smooth", 1.0, 100.0, log=True),
    }
    if task == "binary":
        params["scale_pos_weight"] = trial.suggest_float(
            "scale_pos_weight", 1.0, max(1.0 + 1e-9, imbalance)
        )
    return params


def _complete(params: dict[str, Any], task: str) -> dict[str, Any]:
    params = dict(params)
    if params.get("bagging_fraction", 1.0) < 1.0:
        params.setdefault("bagging_freq", 1)
    if task != "binary":
        params.pop("scale_pos_weight", None)
    return params


# --- fitting ----------------------------------------------------------------------------


def make_datasets(train: XY, valid: XY, features: FeatureSpec) -> tuple[lgb.Dataset, lgb.Dataset]:
    """LightGBM datasets of a train/valid pair with native categoricals, binned on first use.

    One pair serves every fit whose parameters leave binning alone: all the searched ones
    (``feature_pre_filter`` is off, so ``min_child_samples`` does not touch the bins)."""
    ds_params = {"feature_pre_filter": False, "verbosity": -1}
    names, cats = list(features.columns), features.categorical_indices
    dtrain = lgb.Dataset(
        train.X, train.y, feature_name=names, categorical_feature=cats, params=ds_params
    )
    dvalid = lgb.Dataset(
        valid.X, valid.y, reference=dtrain, categorical_feature=cats, params=ds_params
    )
    return dtrain, dvalid


def fit_booster(
    params: dict[str, Any],
    train: XY,
    valid: XY,
    features: FeatureSpec,
    *,
    task: str,
    seed: int,
    num_threads: int,
    max_rounds: int = MAX_BOOST_ROUNDS,
    early_stopping_rounds: int | None = EARLY_STOPPING_ROUNDS,
    callbacks: list[Callable] | None = None,
    init_model: lgb.Booster | None = None,
    evals: dict | None = None,
    datasets: tuple[lgb.Dataset, lgb.Dataset] | None = None,
    keep_training_booster: bool = False,
) -> lgb.Booster:
    """Train one booster with native categoricals and early stopping on ``valid``.

    ``evals`` (a dict) receives the per-iteration valid metric; ``init_model`` continues
    training from an existing booster (its trees are kept, new ones are added); ``datasets``
    (from :func:`make_datasets`, without ``init_model``) skips binning ``train``/``valid``
    again; ``keep_training_booster`` skips LightGBM's final model-string round trip (for a
    booster that is only read, not saved).
    """
    full = {**base_params(task, seed, num_threads), **_complete(params, task)}
    if datasets is None or init_model is not None:  # init scores need the raw rows per fit
        datasets = make_datasets(train, valid, features)
    dtrain, dvalid = datasets
    cbs = list(callbacks or [])
    if early_stopping_rounds:
        cbs.append(lgb.early_stopping(early_stopping_rounds, verbose=False))
    if evals is not None:
        cbs.append(lgb.record_evaluation(evals))
    return lgb.train(
        full,
        dtrain,
        num_boost_round=max_rounds,
        valid_sets=[dvalid],
        valid_names=["valid"],
        callbacks=cbs,
        init_model=init_model,
        keep_training_booster=keep_training_booster,
    )


def predict(booster: lgb.Booster, X: np.ndarray, num_threads: int = 1) -> np.ndarray:
    best = booster.best_iteration or None
    return booster.predict(X, num_iteration=best, num_threads=num_threads)


def fit_default(
    train: XY, valid: XY, features: FeatureSpec, *, task: str, seed: int, num_threads: int
) -> lgb.Booster:
    """The untuned baseline: LightGBM defaults, 100 rounds, no early stopping."""
    return fit_booster(
        {},
        train,
        valid,
        features,
        task=task,
        seed=seed,
        num_threads=num_threads,
        max_rounds=DEFAULT_BOOST_ROUNDS,
        early_stopping_rounds=None,
    )


# --- tuning -----------------------------------------------------------------------------


def tune(
    train: XY,
    valid: XY,
    features: FeatureSpec,
    *,
    task: str,
    seed: int,
    num_threads: int,
    trials: int,
    timeout_s: float | None,
    storage: str | None,
    study_name: str,
    warm_params: list[dict[str, Any]] | None = None,
    pruning: bool = True,
    n_jobs: int = 1,
    init_model: lgb.Booster | None = None,
    on_trial: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TuneResult:
    """Optuna TPE search (seeded) with median pruning on the valid metric, bounded by
    ``trials`` and ``timeout_s``. ``warm_params`` are enqueued as the first trials, in order.

    Same data, seed and trial budget give the same trials when ``n_jobs == 1`` and the
    wall-time budget is not what stops the study.
    """
    import optuna
    from optuna_integration import LightGBMPruningCallback

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    metric = VALID_METRIC[task]
    imbalance = _imbalance(train.y) if task == "binary" else 1.0
    pruner = make_pruner() if pruning else optuna.pruners.NopPruner()
    study = optuna.create_study(
        study_name=study_name,
        storage=open_storage(storage),
        direction=DIRECTION[task],
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=pruner,
        load_if_exists=True,
    )
    for params in warm_params or []:
        study.enqueue_trial(_in_space(params, imbalance), skip_if_exists=True)

    local = threading.local()  # one dataset pair per worker thread (n_jobs), binned once

    def objective(trial: optuna.Trial) -> float:
        params = suggest_params(trial, task, imbalance)
        cbs = (
            [_AtIterations(LightGBMPruningCallback(trial, metric, "valid"), REPORT_AT)]
            if pruning
            else []
        )
        if not hasattr(local, "datasets"):
            local.datasets = make_datasets(train, valid, features)
        booster = fit_booster(
            params, train, valid, features, task=task, seed=seed, num_threads=num_threads,
            callbacks=cbs, init_model=init_model, datasets=local.datasets,
            keep_training_booster=True,
        )  # fmt: skip
        trial.set_user_attr("best_iteration", booster.best_iteration)
        return float(booster.best_score["valid"][metric])

    def report(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if on_trial is not None:
            on_trial(_trial_row(study, trial))
        if should_stop is not None and should_stop():  # e.g. a CPU-time budget (benchmarks)
            study.stop()

    started = time.perf_counter()
    study.optimize(objective, n_trials=trials, timeout=timeout_s, n_jobs=n_jobs, callbacks=[report])
    wall = time.perf_counter() - started
    states = [t.state for t in study.trials]
    try:
        best = study.best_trial
    except ValueError:
        raise RuntimeError(f"study {study_name!r} finished no trial within the budget") from None
    return TuneResult(
        best_params=dict(best.params),
        best_value=float(best.value),
        best_trial=best.number,
        n_trials=len(states),
        n_complete=sum(s == optuna.trial.TrialState.COMPLETE for s in states),
        n_pruned=sum(s == optuna.trial.TrialState.PRUNED for s in states),
        study_name=study_name,
        wall_s=wall,
        trials=[_trial_row(study, t) for t in study.trials],
    )


def open_storage(url: str | None) -> Any:
    """An Optuna storage for ``url`` (``None``: in memory). A SQLite file is switched to WAL
    mode with ``synchronous=NORMAL``: its default rollback journal costs ~12 ms per commit
    here, and a study commits several times per trial (params, reports, state)."""
    if url is not None and url.startswith("postgresql://"):
        return _postgres_driver(url)
    if url is None or not url.startswith("sqlite:///"):
        return url
    import sqlite3

    import optuna
    from sqlalchemy import event

    path = Path(url.removeprefix("sqlite:///"))
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")  # persistent: stored in the database file
    storage = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
    event.listen(storage.engine, "connect", _sqlite_pragmas)
    storage.engine.dispose()  # connections made before the listener reconnect with it
    return storage


def _postgres_driver(url: str) -> str:
    """SQLAlchemy 2.1 maps ``postgresql://`` to psycopg 3; the locked env ships psycopg2."""
    import importlib.util

    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2"):
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")


def make_pruner() -> Any:
    import optuna

    if PRUNER == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=REPORT_AT[0], reduction_factor=3)
    return optuna.pruners.MedianPruner(
        n_startup_trials=PRUNER_STARTUP_TRIALS, n_warmup_steps=PRUNER_WARMUP_STEPS
    )


class _AtIterations:
    """Forward a LightGBM callback after the given iterations only. The pruning callback
    reports every iteration; on a SQLite/PostgreSQL study each report is a committed write
    plus a read of all trials by the pruner. Profiled on Telco with reports every 10
    iterations, pruning bookkeeping cost twice the boosting it saved."""

    def __init__(self, callback: Callable, iterations: tuple[int, ...]):
        self.callback, self.iterations = callback, frozenset(iterations)
        self.order = getattr(callback, "order", 30)
        self.before_iteration = False

    def __call__(self, env: Any) -> None:
        if env.iteration + 1 in self.iterations:
            self.callback(env)


def _imbalance(y: np.ndarray) -> float:
    pos = float(np.sum(y))
    return max(1.0, (len(y) - pos) / max(pos, 1.0))


def _in_space(params: dict[str, Any], imbalance: float) -> dict[str, Any]:
    """Clip enqueued parameters into the search space's bounds (a champion's or defaults)."""
    bounds = {
        "learning_rate": (0.01, 0.1),
        "num_leaves": (2, 32),
        "min_child_samples": (10, 300),
        "feature_fraction": (0.4, 1.0),
        "bagging_fraction": (0.5, 1.0),
        "lambda_l2": (1e-3, 100.0),
        "cat_smooth": (1.0, 100.0),
        "scale_pos_weight": (1.0, max(1.0 + 1e-9, imbalance)),
    }
    out = {}
    for key, (lo, hi) in bounds.items():
        if key in params and params[key] is not None:
            value = min(max(params[key], lo), hi)
            out[key] = int(value) if isinstance(lo, int) else float(value)
    return out


def _trial_row(study: Any, trial: Any) -> dict[str, Any]:
    value = trial.value if trial.value is not None and math.isfinite(trial.value) else None
    try:
        best_value = study.best_value
    except ValueError:
        best_value = None
    return {
        "number": trial.number,
        "state": trial.state.name,
        "value": value,
        "best_value": best_value,
        "best_iteration": trial.user_attrs.get("best_iteration"),
        "duration_s": trial.duration.total_seconds() if trial.duration else None,
        "params": dict(trial.params),
    }


# --- the training run as the flow sees it -----------------------------------------------


DATA_SUFFIXES = (".parquet", ".csv")


def resolve_data_path(data: str | None, dataset: DatasetSpec) -> Path:
    """The file to train on: ``data`` if given, else the dataset's ``extras["source"]``, else
    the one file named ``data/<name>.*`` or ``data/<name>_*.*`` (CSV/Parquet) in the repo."""
    if data:
        path = Path(data)
    elif dataset.extras.get("source"):
        path = Path(dataset.extras["source"])
        if not path.is_absolute() and not path.exists():
            path = _REPO / path
    else:
        found = sorted(
            p
            for pattern in (f"{dataset.name}.*", f"{dataset.name}_*.*")
            for p in (_REPO / "data").glob(pattern)
            if p.suffix in DATA_SUFFIXES
        )
        if len(found) != 1:
            what = "no" if not found else f"{len(found)} candidate"
            raise FileNotFoundError(
                f"{what} data file(s) for dataset {dataset.name!r} in {_REPO / 'data'}: "
                "pass one with --data PATH"
            )
        path = found[0]
    if not path.exists():
        raise FileNotFoundError(f"training data file {path} does not exist")
    return path


@dataclass(frozen=True)
class TuneOptions:
    """The tuning budget and where the study lives (built from the flow's config)."""

    trials: int
    timeout_s: float | None
    seed: int
    num_threads: int
    storage: str | None
    study_name: str
    n_jobs: int = 1
    pruning: bool = True


def new_study_name(dataset: str, data_version: str) -> str:
    """A fresh study per run (a reused name would continue the old study's trials)."""
    return f"{dataset}-{data_version}-{datetime.now(UTC):%Y%m%dT%H%M%S%f}"


@dataclass
class TrainedModel:
    """The tuned model, the untuned baseline on the same split, and how they were found."""

    booster: lgb.Booster
    baseline: lgb.Booster
    params: dict[str, Any]
    tuning: TuneResult
    evals: dict[str, Any]
    best_iteration: int

    def importance(self) -> dict[str, float]:
        gains = self.booster.feature_importance("gain", iteration=self.best_iteration or None)
        names = self.booster.feature_name()
        return dict(sorted(zip(names, map(float, gains), strict=True), key=lambda kv: -kv[1]))


def train_model(
    splits: Splits,
    dataset: DatasetSpec,
    features: FeatureSpec,
    options: TuneOptions,
    *,
    warm_params: list[dict[str, Any]] | None = None,
    init_model: lgb.Booster | None = None,
    on_trial: Callable[[dict[str, Any]], None] | None = None,
) -> TrainedModel:
    """Tune on train/valid, refit the best parameters, and fit the untuned baseline."""
    train = to_xy(splits.train, dataset, features, validate=True)
    valid = to_xy(splits.valid, dataset, features, validate=True)
    common = {"task": dataset.task, "seed": options.seed, "num_threads": options.num_threads}
    tuning = tune(
        train, valid, features, **common, trials=options.trials, timeout_s=options.timeout_s,
        storage=options.storage, study_name=options.study_name, warm_params=warm_params,
        pruning=options.pruning, n_jobs=options.n_jobs, init_model=init_model, on_trial=on_trial,
    )  # fmt: skip
    evals: dict[str, Any] = {}
    booster = fit_booster(
        tuning.best_params, train, valid, features, **common, init_model=init_model, evals=evals
    )
    baseline = fit_default(train, valid, features, **common)
    params = {**base_params(**common), **_complete(tuning.best_params, dataset.task)}
    return TrainedModel(booster, baseline, params, tuning, evals, booster.best_iteration)


@dataclass
class Scored:
    """Labels and scores of the valid and test splits (and the baseline's test scores), plus
    the reference rows (a bounded sample of the held-out valid + test rows) and their scores."""

    valid_y: np.ndarray
    valid_scores: np.ndarray
    test_y: np.ndarray
    test_scores: np.ndarray
    baseline_scores: np.ndarray
    reference: pl.DataFrame
    reference_scores: np.ndarray


REFERENCE_ROWS = 100_000  # plenty for drift statistics


def score_splits(
    model: TrainedModel,
    splits: Splits,
    dataset: DatasetSpec,
    features: FeatureSpec,
    seed: int = 0,
    reference_rows: int = REFERENCE_ROWS,
) -> Scored:
    """Score the held-out splits once each, with the shared feature function, as serving will.

    The drift reference is a sample of the held-out rows with the scores already made for
    them: production scores rows the model never trained on, so held-out scores are the
    distribution to compare them with (training rows score more confidently), and no row is
    scored twice (on 1M rows, scoring a separate training sample cost ~1 s)."""
    threads = int(model.params.get("num_threads", 1))
    valid, test = to_xy(splits.valid, dataset, features), to_xy(splits.test, dataset, features)
    valid_scores = predict(model.booster, valid.X, threads)
    test_scores = predict(model.booster, test.X, threads)
    reference, reference_scores = _held_out_sample(
        splits, np.concatenate([valid_scores, test_scores]), reference_rows, seed
    )
    return Scored(
        valid_y=valid.y,
        valid_scores=valid_scores,
        test_y=test.y,
        test_scores=test_scores,
        baseline_scores=predict(model.baseline, test.X, threads),
        reference=reference,
        reference_scores=reference_scores,
    )


def _held_out_sample(
    splits: Splits, scores: np.ndarray, rows: int, seed: int
) -> tuple[pl.DataFrame, np.ndarray]:
    """At most ``rows`` of valid + test (in that order, as ``scores`` is), seeded."""
    n_valid, n = splits.valid.height, splits.valid.height + splits.test.height
    keep = np.arange(n)
    if n > rows:
        keep = np.sort(np.random.default_rng(seed).choice(n, size=rows, replace=False))
    in_valid = keep < n_valid
    frame = pl.concat([splits.valid[keep[in_valid]], splits.test[keep[~in_valid] - n_valid]])
    return frame, scores[keep]


def check_ingested(ingested: Any, dataset: DatasetSpec, min_rows: int, strict: bool) -> None:
    """Refuse an ingest that failed its quality thresholds (when ``strict``) or accepted data
    that cannot train (see :func:`check_training_data`)."""
    if strict and not ingested.quality_passed:
        raise TrainingDataError(
            "training data failed data-quality checks: " + "; ".join(ingested.quality_failures)
        )
    check_training_data(ingested.accepted, dataset, min_rows)


def _redact(url: str | None) -> str | None:
    if not url or "://" not in url or "@" not in url:
        return url
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def lineage(
    *, config: dict[str, Any], data_version: str, source: Path, prior: Any, storage: str | None
) -> dict[str, Any]:
    """Where a model comes from: data, code, config and its parent models (``prior`` is a
    ``tasks.registry.PriorModel``)."""
    from tasks.tracking import git_sha

    warm_from = prior.champion if (config.get("warm_start") and prior.champion) else None
    return {
        "config": config,
        "data_version": data_version,
        "data_source": str(source),
        "git_sha": git_sha(),
        "warm_start_from": warm_from,
        "init_model": prior.init_tag,
        "optuna_storage": _redact(storage),
        "lightgbm_version": lgb.__version__,
    }


def train_result(
    *, registered: Any, metadata: dict[str, Any], slices: dict[str, Any], profile: Path | None
) -> dict[str, Any]:
    """The flow's JSON-ready answer (``registered``: ``tasks.registry.RegisteredModel``)."""
    keys = (
        "dataset", "task", "data_version", "schema_hash", "metrics", "baseline_metrics",
        "threshold", "business", "params", "best_iteration", "tuning", "rows", "git_sha",
        "wandb_run_dir", "wandb_run_path", "warm_start_from", "init_model", "train_wall_s",
        "peak_rss_mb",
    )  # fmt: skip
    out = {"model_tag": registered.tag, "alias": registered.alias}
    out.update({k: metadata.get(k) for k in keys})
    out["expected_value_per_month"] = (metadata.get("business") or {}).get(
        "expected_value_per_month"
    )
    out["slices"] = slices
    out["model_path"] = str(registered.path)
    out["reference_profile"] = str(profile) if profile else None
    return out
