"""Several processes opening one new SQLite study file at once (two workers' first trainings
on one home) all get a working storage: Optuna's table creation and alembic stamp raced to a
UNIQUE constraint failure before the opener took a per-file lock."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # minutes long: xdist workers start it first (tests/conftest.py)

OPENERS = 6
ROUNDS = 4


def _open(url: str, barrier, results) -> None:  # a child process
    import optuna

    from tasks.training.storage import open_storage

    barrier.wait(timeout=60)
    try:
        storage = open_storage(url)
        optuna.create_study(storage=storage, study_name=f"s{mp.current_process().pid}")
        results.put("ok")
    except Exception as exc:  # reported to the test, not raised in the child
        results.put(f"{type(exc).__name__}: {exc}"[:300])


def test_processes_opening_one_new_study_file_at_once_all_succeed(tmp_path: Path):
    ctx = mp.get_context("spawn")
    outcomes: list[str] = []
    for n in range(ROUNDS):
        url = f"sqlite:///{tmp_path / f'round{n}' / 'optuna.db'}"
        barrier, results = ctx.Barrier(OPENERS), ctx.Queue()
        procs = [ctx.Process(target=_open, args=(url, barrier, results)) for _ in range(OPENERS)]
        for p in procs:
            p.start()
        outcomes += [results.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(timeout=60)
    assert outcomes == ["ok"] * (OPENERS * ROUNDS), [o for o in outcomes if o != "ok"]
