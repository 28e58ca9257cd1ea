"""The Optuna study: seeded TPE over :mod:`tasks.training.space`, median pruning on the
valid metric at a few iterations, bounded by a trial and a wall-time budget."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import lightgbm as lgb
import numpy as np

from tasks.training.fit import VALID_METRIC, FitData, fit_booster, make_datasets
from tasks.training.space import in_space, suggest_params
from tasks.training.storage import open_storage

if TYPE_CHECKING:
    import optuna
    from lightgbm.callback import CallbackEnv

    from tasks.training.distributed import TuneJob

DIRECTION = {"binary": "maximize", "multiclass": "minimize", "regression": "minimize"}
PRUNER = "median"
PRUNER_STARTUP_TRIALS = 5
PRUNER_WARMUP_STEPS = 20
# Iterations after which a trial reports its valid metric to the pruner: each report is a
# storage write plus a read of all trials, so few of them, doubling like successive-halving rungs.
REPORT_AT = (25, 50, 100, 200, 400, 800, 1600)
FINISHED = ("COMPLETE", "PRUNED")  # what counts toward a shared study's trial budget


@dataclass(frozen=True)
class TuneOptions:
    """The tuning budget and where the study lives (``TrainConfig.tune_options`` builds it)."""

    trials: int
    timeout_s: float | None
    seed: int
    num_threads: int
    storage: str | None
    study_name: str
    n_jobs: int
    pruning: bool
    distributed: TuneJob | None = None  # tune_workers > 1: the trials run on tune-worker runs


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


def tune(
    data: FitData,
    *,
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
    share: StudyShare | None = None,
) -> TuneResult:
    """Optuna TPE search (seeded) with median pruning on the valid metric, bounded by
    ``trials`` and ``timeout_s``. ``warm_params`` are enqueued as the first trials, in order.

    Same data, seed and trial budget give the same trials when ``n_jobs == 1`` and the
    wall-time budget is not what stops the study. With ``share`` this process is one of
    several on the study: it stops once the study holds ``trials`` finished trials.
    """
    from optuna_integration import LightGBMPruningCallback

    task, metric = data.task, VALID_METRIC[data.task]
    imbalance = imbalance_of(data)
    study = open_study(data, storage=storage, study_name=study_name, pruning=pruning,
                       sampler_seed=data.seed + (share.worker + 1 if share else 0))  # fmt: skip
    for params in warm_params or []:
        study.enqueue_trial(in_space(params, imbalance), skip_if_exists=True)

    local = threading.local()  # one dataset pair per worker thread (n_jobs), binned once

    def objective(trial: optuna.Trial) -> float:
        if share is not None:
            trial.set_user_attr("worker", share.worker)
        params = suggest_params(trial, task, imbalance)
        cbs = (
            [_AtIterations(LightGBMPruningCallback(trial, metric, "valid"), REPORT_AT)]
            if pruning
            else []
        )
        if not hasattr(local, "datasets"):
            local.datasets = make_datasets(data)
        booster = fit_booster(
            params, data, callbacks=cbs, init_model=init_model, datasets=local.datasets,
            keep_training_booster=True,
        )  # fmt: skip
        trial.set_user_attr("best_iteration", booster.best_iteration)
        return float(booster.best_score["valid"][metric])

    def report(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if on_trial is not None:
            on_trial(_trial_row(study, trial))
        if should_stop is not None and should_stop():  # e.g. a CPU-time budget (benchmarks)
            study.stop()

    callbacks: list[Callable] = [report]
    started = time.perf_counter()
    if share is not None:  # the study-wide count decides, not this process's
        callbacks.append(SharedBudget(trials, started + (timeout_s or math.inf)))
    study.optimize(objective, n_trials=None if share else trials, timeout=timeout_s,
                   n_jobs=n_jobs, callbacks=callbacks)  # fmt: skip
    return study_result(study, time.perf_counter() - started)


@dataclass(frozen=True)
class StudyShare:
    """This process's part in a study several workers share (``worker``: its index)."""

    worker: int


class SharedBudget:
    """Optuna's ``MaxTrialsCallback`` for a study several workers share, which also waits
    for trials still running elsewhere: once the study holds ``trials`` finished trials, this
    worker stops when none is running or waiting. A trial whose worker died stays running
    until its heartbeat is ``optuna_stale_after_s`` old; it is then failed and enqueued again
    (the storage's retry callback), and this worker runs it. So the study ends with
    ``trials`` finished, at most (workers - 1) over, none lost and none left running."""

    def __init__(self, trials: int, deadline: float, poll_s: float = 1.0):
        self.trials, self.deadline, self.poll_s = trials, deadline, poll_s

    def __call__(self, study: optuna.Study, _trial: optuna.trial.FrozenTrial) -> None:
        import optuna

        state = optuna.trial.TrialState
        while count_trials(study, finished_states()) >= self.trials:
            optuna.storages.fail_stale_trials(study)
            if count_trials(study, (state.WAITING,)):
                return  # a retried trial: the next one this worker asks for
            if not count_trials(study, (state.RUNNING,)) or time.perf_counter() > self.deadline:
                study.stop()
                return
            time.sleep(self.poll_s)


def count_trials(study: optuna.Study, states: tuple[optuna.trial.TrialState, ...]) -> int:
    return len(study.get_trials(deepcopy=False, states=states))


def open_study(
    data: FitData, *, storage: str | None, study_name: str, pruning: bool, sampler_seed: int
) -> optuna.Study:
    """The run's study (created, or loaded when it exists): direction by task, seeded TPE."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        study_name=study_name,
        storage=open_storage(storage),
        direction=DIRECTION[data.task],
        sampler=optuna.samplers.TPESampler(seed=sampler_seed),
        pruner=make_pruner() if pruning else optuna.pruners.NopPruner(),
        load_if_exists=True,
    )


def study_result(study: optuna.Study, wall_s: float) -> TuneResult:
    """What a study found, and its trials."""
    import optuna

    states = [t.state for t in study.trials]
    try:
        best = study.best_trial
    except ValueError:
        raise RuntimeError(
            f"study {study.study_name!r} finished no trial within the budget"
        ) from None
    return TuneResult(
        best_params=dict(best.params),
        best_value=float(best.value),
        best_trial=best.number,
        n_trials=len(states),
        n_complete=sum(s == optuna.trial.TrialState.COMPLETE for s in states),
        n_pruned=sum(s == optuna.trial.TrialState.PRUNED for s in states),
        study_name=study.study_name,
        wall_s=wall_s,
        trials=[_trial_row(study, t) for t in study.trials],
    )


def finished_states() -> tuple[optuna.trial.TrialState, ...]:
    import optuna

    return tuple(optuna.trial.TrialState[name] for name in FINISHED)


def make_pruner() -> optuna.pruners.BasePruner:
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
    iterations, pruning bookkeeping cost twice the boosting it saved.

    Relies on LightGBM's callback protocol (``order``, ``before_iteration``, an ``env`` with
    ``iteration``): ``test_tuning_reports_to_the_pruner`` fails if the pinned version stops
    calling it that way."""

    def __init__(self, callback: Callable, iterations: tuple[int, ...]):
        self.callback, self.iterations = callback, frozenset(iterations)
        self.order = getattr(callback, "order", 30)
        self.before_iteration = False

    def __call__(self, env: CallbackEnv) -> None:
        if env.iteration + 1 in self.iterations:
            self.callback(env)


def imbalance_of(data: FitData) -> float:
    """Negatives per positive of the train split (binary; 1 for regression): the class-weight
    search range is scaled by it."""
    return _imbalance(data.train.y) if data.task == "binary" else 1.0


def _imbalance(y: np.ndarray) -> float:
    pos = float(np.sum(y))
    return max(1.0, (len(y) - pos) / max(pos, 1.0))


def _trial_row(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
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
