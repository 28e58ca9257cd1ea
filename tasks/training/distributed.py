"""Distributed tuning: one Optuna study, its trials run by several Prefect flow runs.

The train flow's tuning step creates the study (warm trials enqueued), starts
``TuneJob.tune_workers`` runs of the tune-worker deployment (``run_deployment``, one per work
queue when queues are given) and waits. Each run (:func:`run_share`) rebuilds the same
train/valid pair from the snapshot (data version + seed: the split is deterministic) and
optimizes the shared study until it holds ``trials`` finished trials (``SharedBudget``: at most
``tune_workers - 1`` over). Before its first trial each run checks in on the study and waits
(at most ``START_BARRIER_S``) until all ``tune_workers`` runs have: the runs start their trials
together, however late a worker picked its run up or loaded its data, so they share the trials
evenly instead of the first one taking most of them. The study lives where
``DRIFTLOOP_OPTUNA_STORAGE`` says, the same URL on every host; on PostgreSQL running trials
send heartbeats, and a trial whose worker died is failed and re-run with its parameters
(:mod:`tasks.training.storage`), so a killed worker costs no trial. The caller then refits the
best trial as a local study would.
"""

from __future__ import annotations

import socket
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from tasks.training.space import in_space
from tasks.training.tune import (
    StudyShare,
    TuneResult,
    count_trials,
    finished_states,
    imbalance_of,
    open_study,
    study_result,
    tune,
)

if TYPE_CHECKING:
    import optuna

    from tasks.settings import Settings
    from tasks.training.fit import FitData

DEPLOYMENT = "tune-worker/tune-worker"
START_SLACK_S = 300.0  # beyond the tuning budget: worker pick-up, imports, loading the data
POLL_S = 1.0
START_BARRIER_S = 60.0  # a run waits at most this long for the others to check in
BARRIER_POLL_S = 0.2
_CHECK_IN = "tune-worker-ready:"  # study user-attribute key prefix, one per worker index


@dataclass(frozen=True)
class TuneJob:
    """What every tune worker of one training run needs (``TrainConfig.tune_options`` builds it
    from the config fields of the same names)."""

    dataset: str
    data_version: str
    study_name: str
    trials: int
    timeout_s: float
    seed: int
    num_threads: int
    pruning: bool
    valid_fraction: float
    test_fraction: float
    tune_workers: int
    tune_queues: list[str] | None = None
    tune_deployment: str = DEPLOYMENT

    def queue(self, worker: int) -> str | None:
        """The work queue of worker ``worker``'s run (None: the deployment's own)."""
        return self.tune_queues[worker % len(self.tune_queues)] if self.tune_queues else None


@dataclass(frozen=True)
class ShareResult:
    """One tune worker's answer (JSON-ready through ``asdict``)."""

    worker: int
    host: str
    trials_run: int
    study_trials: int


def tune_on_workers(
    job: TuneJob,
    data: FitData,
    *,
    storage: str,
    warm_params: list[dict[str, Any]] | None = None,
) -> TuneResult:
    """Create the study, fan its trials out to ``job.tune_workers`` deployment runs, wait
    until they finished ``job.trials`` trials, and return what the study found."""
    from prefect.deployments import run_deployment

    study = open_study(data, storage=storage, study_name=job.study_name, pruning=job.pruning,
                       sampler_seed=data.seed)  # fmt: skip
    imbalance = imbalance_of(data)
    for params in warm_params or []:
        study.enqueue_trial(in_space(params, imbalance), skip_if_exists=True)
    started = time.perf_counter()
    runs = [
        run_deployment(
            job.tune_deployment, parameters={"job": asdict(job), "worker": i}, timeout=0,
            work_queue_name=job.queue(i), flow_run_name=f"{job.study_name}-w{i}",
        ).id
        for i in range(job.tune_workers)
    ]  # fmt: skip
    states = _wait(study, runs, job.trials, deadline=started + job.timeout_s + START_SLACK_S)
    finished = count_trials(study, finished_states())
    if finished < job.trials:
        raise RuntimeError(
            f"tune workers finished {finished} of {job.trials} trials of study "
            f"{job.study_name!r} (worker runs: {', '.join(states)})"
        )
    return study_result(study, time.perf_counter() - started)


def _wait(study: optuna.Study, runs: list, trials: int, deadline: float) -> list[str]:
    """Until every run ended, or the study has its trials and none running or waiting (a
    worker whose host died never reports its run as ended). Meanwhile a trial whose worker
    stopped sending heartbeats is failed and enqueued again (PostgreSQL studies), so a live
    worker re-runs it, and none is left running."""
    import optuna
    from prefect.client.orchestration import get_client

    pending = (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)
    with get_client(sync_client=True) as client:
        while True:
            states = [client.read_flow_run(r).state for r in runs]
            optuna.storages.fail_stale_trials(study)
            if all(s is not None and s.is_final() for s in states) or (
                count_trials(study, finished_states()) >= trials
                and count_trials(study, pending) == 0
            ):
                return [s.name if s else "none" for s in states]
            if time.perf_counter() > deadline:
                raise TimeoutError(
                    f"tune workers still running at the deadline: {[s and s.name for s in states]}"
                )
            time.sleep(POLL_S)


def start_together(
    study: optuna.Study, worker: int, workers: int, *, limit_s: float = START_BARRIER_S
) -> list[int]:
    """Check ``worker`` in on ``study`` and wait until all ``workers`` have checked in, or
    ``limit_s`` passed (a worker that never starts must not hold up the others: they go on
    without it). Return the workers checked in when this one starts."""
    study.set_user_attr(f"{_CHECK_IN}{worker}", socket.gethostname())
    deadline = time.monotonic() + limit_s
    while True:
        ready = sorted(int(k.removeprefix(_CHECK_IN)) for k in study.user_attrs
                       if k.startswith(_CHECK_IN))  # fmt: skip
        if len(ready) >= workers or time.monotonic() >= deadline:
            return ready
        time.sleep(BARRIER_POLL_S)


def run_share(job: TuneJob, worker: int, settings: Settings) -> ShareResult:
    """One worker's part: the run's train/valid pair from its snapshot, then trials on the
    shared study until it holds ``job.trials`` finished ones."""
    from schemas import load_dataset
    from tasks.features import FeatureSpec
    from tasks.ingest.snapshot import load_snapshot
    from tasks.training.fit import fit_data
    from tasks.training.split import split_data

    dataset = load_dataset(job.dataset)
    frame = load_snapshot(job.data_version, settings)
    splits = split_data(frame, dataset, job.seed, job.valid_fraction, job.test_fraction)
    data = fit_data(splits, dataset, FeatureSpec.from_dataset(dataset), job.seed,
                    job.num_threads)  # fmt: skip
    study = open_study(data, storage=settings.optuna_url, study_name=job.study_name,
                       pruning=job.pruning, sampler_seed=data.seed)  # fmt: skip
    start_together(study, worker, job.tune_workers)
    result = tune(data, trials=job.trials, timeout_s=job.timeout_s, storage=settings.optuna_url,
                  study_name=job.study_name, pruning=job.pruning,
                  share=StudyShare(worker))  # fmt: skip
    done = study.get_trials(deepcopy=False, states=finished_states())
    mine = [t for t in done if t.user_attrs.get("worker") == worker]
    return ShareResult(worker, socket.gethostname(), len(mine), result.n_trials)
