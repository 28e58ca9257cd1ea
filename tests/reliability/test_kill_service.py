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

from driftloop.supervise import free_port
from tasks.predlog import load_predictions
from tests.reliability.kit import Load, Service, figures, port_free, wait_port_free
from tests.support.homes import tiny_champion_home
from tests.support.models import tiny_models
from tests.support.server import make_home

pytestmark = pytest.mark.slow  # minutes long: xdist workers start it first (tests/conftest.py)

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
    """Kills 1 and 3 take every process at once; kill 2 only the ``driftloop serve`` process
    (``kill -9 <pid>``): its workers must die with it and free the port."""
    svc, records = service
    rng = random.Random(13)
    svc.start().wait_ready()
    recover: list[float] = []
    processes: list[int] = []
    port_freed: list[float] = []
    with Load(svc.url, records, threads=4) as load:
        for k in range(KILLS):
            time.sleep(rng.uniform(*LOAD_SECONDS))
            processes.append(len(svc.processes()))
            t0 = time.monotonic()
            if k == 1:
                svc.kill_main()
                port_freed.append(wait_port_free(svc.port, timeout=10))
            else:
                svc.kill_all()
                assert port_free(svc.port), "a process of the killed service holds the port"
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
        durability=svc.settings.predlog_durability,  # the default: answered once written
        kills=KILLS,
        processes_killed=sum(processes),
        requests_acknowledged=len(acked),
        refused_or_cut_during_kills=load.failed,
        rows_found=len(acked & logged),
        rows_missing=len(missing),
        log_files=len(files),
        unreadable_files=unreadable,
        seconds_until_port_free_after_serve_alone_killed=round(port_freed[0], 2),
        max_seconds_to_ready_again=round(max(recover), 1),
    )
    assert len(acked) > 200 * KILLS
    assert unreadable == 0
    assert not missing, f"{len(missing)} acknowledged requests have no log row"
