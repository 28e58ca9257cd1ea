"""Tune-worker flow: one worker's share of a training run's Optuna study.

The train flow starts ``tune_workers`` runs of this flow's deployment (``tune-worker`` in
prefect.yaml) when it tunes on several workers; each run rebuilds the run's train/valid pair
from the shared snapshot and runs trials on the shared study until it holds the requested
number of finished trials (see :mod:`tasks.training.distributed`).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from tasks.settings import get_settings
from tasks.training import distributed

run_share = task(distributed.run_share, name="tune_share", cache_policy=NO_CACHE)


@flow(name="tune-worker")
def tune_worker(job: distributed.TuneJob, worker: int = 0) -> dict[str, Any]:
    """Run trials of ``job``'s study until it holds ``job.trials`` finished ones."""
    return asdict(run_share(job=job, worker=worker, settings=get_settings()))
