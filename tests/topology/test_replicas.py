"""Two service replicas on two hosts (network namespaces) sharing one PostgreSQL.

The database host is the bridge's root-namespace address (a private PostgreSQL made for the
test); each replica is ``driftloop serve`` inside its own namespace, bound to its own address.
Shared: the prediction log and the alias index (PostgreSQL) and the model files (one path,
as a shared filesystem would give). Asserted: every acknowledged request has its row; the
monitor's window holds both replicas' traffic; a promotion written once is served by both
replicas within 5 s.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tasks import registry
from tasks.monitoring.window import load_window, window_bounds
from tasks.settings import Settings
from tests.support.models import save_tiny, tiny_models
from tests.support.netns import Host, network, private_postgres, wait_for

REPO = Path(__file__).resolve().parents[2]
PORT = 3000
REQUESTS = 120  # per replica
PROMOTION_BOUND_S = 5.0

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


class Replica:
    """``driftloop serve`` in ``host``'s namespace, on its address."""

    def __init__(self, host: Host, home: Path, env: dict[str, str]) -> None:
        self.host = host
        self.url = f"http://{host.address}:{PORT}"
        self.log_path = home / f"serve-{host.address}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        argv = [sys.executable, "-m", "driftloop", "serve", "--host", host.address]
        self.proc = subprocess.Popen(
            host.argv(*argv, "--port", str(PORT)), cwd=REPO, env=env, stdout=self._log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"replica on {self.host.address} exited:\n{self.log()}")
        with contextlib.suppress(httpx.HTTPError):
            return self.client.get("/readyz").status_code == 200
        return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        self.client.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._log.close()


def _served_tag(replica: Replica, record: dict) -> str:
    response = replica.client.post("/predict", json={"records": [record]})
    response.raise_for_status()
    return response.json()["predictions"][0]["model_tag"]


def test_two_replicas_share_one_log_and_one_alias_index(tmp_path: Path):
    models = tiny_models()
    records = models.records
    home = tmp_path / "shared-home"
    with network(2) as net, private_postgres(net.gateway) as db_url:
        settings = Settings(home=home, database_url=db_url).ensure_dirs()
        a = save_tiny(models.a, models.features, settings, "a")
        b = save_tiny(models.b, models.features, settings, "b")
        registry.promote("telco", a, settings=settings)
        env = {
            **os.environ, **settings.library_env(), "PYTHONPATH": str(REPO),
            "DRIFTLOOP_DATABASE_URL": db_url, "DRIFTLOOP_PREDLOG_FLUSH_SECONDS": "0.5",
        }  # fmt: skip
        replicas: list[Replica] = []
        try:
            for host in net.hosts:
                replicas.append(Replica(host, home, env))
            wait_for(lambda: all(r.ready() for r in replicas), 150, 0.5, "both replicas ready")
            started = window_bounds(0).until

            def send(i: int) -> tuple[int, list[str]]:
                k = i % 2
                batch = random.Random(i).sample(records, 1 + i % 4)
                response = replicas[k].client.post("/predict", json={"records": batch})
                response.raise_for_status()  # acknowledged: it must be in the log
                return k, [p["request_id"] for p in response.json()["predictions"]]

            with ThreadPoolExecutor(8) as pool:
                acked = list(pool.map(send, range(2 * REQUESTS)))
            by_replica = {k: {rid for j, ids in acked for rid in ids if j == k} for k in (0, 1)}
            every = by_replica[0] | by_replica[1]
            assert len(every) == sum(len(ids) for _, ids in acked)  # ids are unique

            def logged() -> set[str]:
                window = window_bounds(10, until=window_bounds(0).until)
                return set(load_window(window, settings)["request_id"].to_list())

            wait_for(lambda: every <= logged(), 20, 0.5, "every acknowledged row logged")
            in_window = load_window(window_bounds(10), settings)
            assert in_window.height == len(every)  # nothing more, nothing twice
            assert by_replica[0] <= logged() and by_replica[1] <= logged()
            assert (in_window["ts"] >= started).all()

            assert {_served_tag(r, records[0]) for r in replicas} == {a}
            registry.promote("telco", b, reason="test", settings=settings)
            promoted = time.monotonic()
            pending = set(range(len(replicas)))
            while pending and time.monotonic() - promoted < PROMOTION_BOUND_S:
                pending = {k for k in pending if _served_tag(replicas[k], records[0]) != b}
                time.sleep(0.1)
            assert not pending, f"replicas {pending} still serve {a} after 5 s"
        finally:
            for replica in replicas:
                replica.stop()
