"""SIGKILL of the service under steady /predict load: every 200 has its prediction-log row.

The whole service (every process it started) is killed several times while four clients keep
sending; after each kill the service restarts on the same port at once. Then the log is read
back: each request id answered 200 must be there, and every log file must read whole.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import polars as pl
import pytest

from tasks.predlog import load_predictions
from tests.reliability.kit import Load, Service, figures, free_port, port_free, wait_port_free
from tests.support.homes import tiny_champion_home
from tests.support.models import tiny_models
from tests.support.server import make_home

KILLS = 3
LOAD_SECONDS = (2.0, 4.0)  # steady load between kills, seconds (uniform)


@pytest.fixture
def service(tmp_path: Path):
    home = make_home("kill")
    models = tiny_models()
    tiny_champion_home(Service(home, 0).settings, models)
    svc = Service(home, free_port())
    try:
        yield svc, models.records
    finally:
        svc.stop()


@pytest.mark.timeout(300)
def test_sigkill_under_load_loses_no_acknowledged_prediction(service):
    svc, records = service
    rng = random.Random(13)
    svc.start().wait_ready()
    recover: list[float] = []
    processes: list[int] = []
    with Load(svc.url, records, threads=4) as load:
        for _ in range(KILLS):
            time.sleep(rng.uniform(*LOAD_SECONDS))
            processes.append(svc.kill_all())
            t0 = time.monotonic()
            assert port_free(svc.port), "a process of the killed service still holds the port"
            svc.start().wait_ready()
            recover.append(time.monotonic() - t0)
        time.sleep(1.0)
    svc.stop()  # a clean stop: the last rows are flushed too
    acked = set(load.acked)
    files = sorted(svc.settings.predictions_dir.glob("*.parquet"))
    unreadable = 0
    for f in files:
        try:
            pl.read_parquet(f)
        except Exception:  # noqa: BLE001 - counted, and asserted to be none
            unreadable += 1
    logged = set(load_predictions(settings=svc.settings)["request_id"])
    missing = acked - logged
    figures(
        "sigkill service under load",
        kills=KILLS,
        processes_killed=sum(processes),
        requests_acknowledged=len(acked),
        refused_or_cut_during_kills=load.failed,
        rows_found=len(acked & logged),
        rows_missing=len(missing),
        log_files=len(files),
        unreadable_files=unreadable,
        max_seconds_to_ready_again=round(max(recover), 1),
    )
    assert len(acked) > 200 * KILLS
    assert unreadable == 0
    assert not missing, f"{len(missing)} acknowledged requests have no log row"


@pytest.mark.timeout(180)
def test_serve_killed_alone_leaves_no_process_holding_the_port(service):
    """``kill -9`` of the ``driftloop serve`` process: its workers die too, the port frees."""
    svc, _ = service
    svc.start().wait_ready()
    workers = [p.pid for p in svc.processes()[1:]]
    assert workers, "bentoml serve started no worker process"
    svc.kill_main()
    freed = wait_port_free(svc.port, timeout=10)
    t0 = time.monotonic()
    svc.start().wait_ready()
    figures(
        "sigkill of the serve process alone",
        workers_before=len(workers),
        seconds_until_port_free=round(freed, 2),
        seconds_to_ready_on_same_port=round(time.monotonic() - t0, 1),
    )
