"""The local stack: a Prefect server (SQLite under ``DRIFTLOOP_HOME``), a process work pool with
the deployments of ``prefect.yaml``, a worker, and any other long-running service (e.g. a
``bentoml serve`` command) on loopback.

Every process starts in its own process group (:mod:`driftloop.supervise`) and is recorded
(pid, group, start time) in ``Settings.stack_state``, so ``driftloop stack down`` from another
shell can stop it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator

from driftloop import prefect_api
from driftloop.supervise import (
    ManagedProcess,
    ProcessRecord,
    StackError,
    free_port,
    run_logged,
    wait_http,
)
from tasks.settings import Settings, get_settings

REPO = Path(__file__).resolve().parents[1]
DEFAULT_POOL = "driftloop-process"
SERVER, WORKER, SERVICES = "prefect-server", "prefect-worker", "prefect-services"


class StackConfig(BaseModel):
    """How to run the local stack. ``poll_s`` lowers worker/runner polling (tests, benchmarks)."""

    host: str = "127.0.0.1"
    port: int | None = Field(default=None, description="API port; None picks a free one.")
    work_pool: str = DEFAULT_POOL
    deploy: bool = True
    deployments: list[str] | None = Field(
        default=None, description="Deployment names to deploy; None deploys all (--all)."
    )
    worker: bool = True
    poll_s: float | None = Field(default=None, gt=0, description="Worker/runner poll interval.")
    scheduler: bool = True
    ui: bool = Field(default=False, description="Serve the Prefect UI at the API's host:port.")
    event_flush_s: float | None = Field(
        default=None, gt=0, description="Server event-persister flush interval (default 5s)."
    )
    serving_url: str | None = Field(
        default=None, description="The service the deployed monitor reads (its /metrics)."
    )
    notify_url: str | None = Field(
        default=None, description="Webhook for prefect.yaml's notifications (automations)."
    )
    database: str | None = Field(
        default=None,
        description="PostgreSQL URL for the Prefect server (default: SQLite under home).",
    )
    redis: str | None = Field(
        default=None,
        description="Redis URL (prefect-redis): messaging, cache, causal ordering, leases.",
    )
    api_servers: int = Field(
        default=1, ge=1, description="API processes; more than one needs database and redis."
    )
    repo: Path = REPO
    startup_timeout_s: float = 120.0
    stop_timeout_s: float = 10.0

    @field_validator("serving_url")
    @classmethod
    def _service_url(cls, url: str | None) -> str | None:  # the monitor's own URL rule
        from tasks.monitoring.serving import service_url

        return service_url(url) if url is not None else None

    @model_validator(mode="after")
    def _several_servers_share_state(self) -> StackConfig:
        # without Redis every process has its own in-memory broker: runs work, but event
        # triggers never fire (verified: 0 of 2), a failure easy to miss (PITFALLS)
        if self.api_servers > 1 and not (self.database and self.redis):
            raise ValueError("several API servers need --database (PostgreSQL) and --redis")
        return self


def server_database_env(database: str | None, redis: str | None) -> dict[str, str]:
    """Prefect server settings for a PostgreSQL database and a Redis broker (prefect-redis)."""
    env: dict[str, str] = {}
    if database:
        from tasks.postgres.db import dsn

        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = dsn(database).replace(
            "postgresql://", "postgresql+asyncpg://", 1
        )
    if redis:
        env.update(
            PREFECT_SERVER_EVENTS_MESSAGING_BROKER="prefect_redis.messaging",
            PREFECT_SERVER_EVENTS_MESSAGING_CACHE="prefect_redis.messaging",
            PREFECT_SERVER_EVENTS_CAUSAL_ORDERING="prefect_redis.ordering",
            PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE="prefect_redis.lease_storage",
            PREFECT_REDIS_MESSAGING_URL=redis,
            PREFECT_SERVER_DOCKET_URL=redis,
        )
    return env


class LocalStack:
    """Start, inspect and stop the local Prefect stack (and extra services) for one home."""

    def __init__(self, settings: Settings | None = None, config: StackConfig | None = None):
        self.settings = settings or get_settings()
        self.config = config or StackConfig()
        self.processes: dict[str, ManagedProcess] = {}
        self.api_url: str | None = None  # what clients and the worker use: the first API
        self.api_urls: list[str] = []  # every API process (any of them serves clients)
        self._load_state()

    # --- state ------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.settings.stack_state

    @property
    def logs_dir(self) -> Path:
        return self.settings.stack_logs_dir

    def _load_state(self) -> None:
        try:
            state = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return
        self.api_url = state.get("api_url")
        self.api_urls = state.get("api_urls", [])
        for rec in state.get("processes", []):
            self.processes[rec["name"]] = ManagedProcess(ProcessRecord(**rec))

    def _save_state(self) -> None:
        from tasks.io import atomic_write

        state = {
            "api_url": self.api_url,
            "api_urls": self.api_urls,
            "config": self.config.model_dump(mode="json"),
            "processes": [asdict(p.record) for p in self.processes.values()],
        }
        atomic_write(self.state_path, json.dumps(state, indent=2).encode())

    # --- environment ------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        """The environment every stack process (and any client of the stack) should use."""
        s = self.settings
        env = {**os.environ, **s.library_env()}
        env["PREFECT_HOME"] = str(s.prefect_home)
        env.setdefault(
            "PREFECT_SERVER_DATABASE_CONNECTION_URL", f"sqlite+aiosqlite:///{s.prefect_db}"
        )
        env.update(server_database_env(self.config.database, self.config.redis))
        env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
        env["PREFECT_SERVER_UI_ENABLED"] = str(self.config.ui).lower()
        env["PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED"] = str(self.config.scheduler).lower()
        if self.api_url:
            env["PREFECT_API_URL"] = self.api_url
            env["DRIFTLOOP_PREFECT_API_URL"] = self.api_url
        if self.config.poll_s:
            poll = f"{self.config.poll_s:g}"
            env["PREFECT_WORKER_QUERY_SECONDS"] = poll
            env["PREFECT_RUNNER_POLL_FREQUENCY"] = str(max(1, int(self.config.poll_s)))
        if self.config.event_flush_s:
            env["PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL"] = (
                f"{self.config.event_flush_s:g}"
            )
        return env

    def _prefect(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "prefect", *args]

    def _log(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    def _start(self, name: str, argv: list[str], cwd: Path | None = None) -> ManagedProcess:
        proc = ManagedProcess.start(
            name, argv, env=self.env(), cwd=cwd or self.config.repo, log_path=self._log(name)
        )
        self.processes[name] = proc
        self._save_state()
        return proc

    # --- lifecycle --------------------------------------------------------------------
    def up(self) -> dict[str, Any]:
        """Start the server, create the pool, deploy, start a worker. Stops all on failure."""
        if self.processes and any(p.alive() for p in self.processes.values()):
            raise StackError(
                f"a stack is already running for {self.settings.root}: stack down first"
            )
        self.processes.clear()
        self.settings.ensure_dirs()
        timings: dict[str, float] = {}
        try:
            t0 = time.monotonic()
            self.start_server()
            timings["server_s"] = time.monotonic() - t0
            if self.config.deploy or self.config.worker:
                self.create_pool()
            worker = self._start_worker_process() if self.config.worker else None
            if self.config.deploy:  # deploys while the worker boots: both are slow starters
                t1 = time.monotonic()
                self.deploy()
                timings["deploy_s"] = time.monotonic() - t1
            self.configure()
            if worker is not None:
                self._wait_worker_ready(worker)
            timings["total_s"] = time.monotonic() - t0
        except BaseException:
            self.down()
            raise
        return {**self.status(), "timings": {k: round(v, 2) for k, v in timings.items()}}

    def start_server(self) -> ManagedProcess:
        """One ``prefect server start``; with ``api_servers > 1``, that many API processes
        (``--no-services``; the first migrates the database, then the others start) and one
        ``prefect server services start`` process."""
        several = self.config.api_servers > 1
        first = self._start_api(SERVER, self.config.port, services=not several)
        if several:
            for i in range(1, self.config.api_servers):
                self._start_api(f"{SERVER}-{i + 1}", None, services=False)
            self._start(SERVICES, self._prefect("server", "services", "start"))
        return first

    def _start_api(self, name: str, port: int | None, *, services: bool) -> ManagedProcess:
        port = port or free_port(self.config.host)
        url = f"http://{self.config.host}:{port}/api"
        if name == SERVER:
            self.api_url, self.api_urls = url, []
        argv = self._prefect("server", "start", "--host", self.config.host, "--port", str(port))
        argv += ["--ui" if self.config.ui else "--no-ui", "--analytics-off"]
        proc = self._start(name, argv + ([] if services else ["--no-services"]))
        wait_http(f"{url}/health", timeout_s=self.config.startup_timeout_s, proc=proc)
        self.api_urls.append(url)
        self._save_state()
        return proc

    def create_pool(self) -> None:
        """Create the process work pool through the API (idempotent)."""
        prefect_api.create_process_pool(self.api_url, self.config.work_pool)

    def deploy(self) -> None:
        names = self.config.deployments
        selection = ["--all"] if not names else [a for n in names for a in ("--name", n)]
        run_logged(
            "deploy", self._prefect("--no-prompt", "deploy", *selection), env=self.env(),
            cwd=self.config.repo, log_path=self._log("deploy"), timeout_s=300,
        )  # fmt: skip

    def configure(self) -> None:
        """What the stack adds to prefect.yaml: the deployed monitor's service URL, crash
        detection (runs whose heartbeat stops become Crashed), and the notification
        automations when there is a webhook to call."""
        from driftloop.automations import apply_crash_detection
        from driftloop.notify import apply_notifications, load_notifications

        if self.config.serving_url and self.config.deploy:
            prefect_api.set_serving_url(self.api_url, self.config.serving_url)
        with prefect_api.use_api(self.api_url):
            apply_crash_detection(self.settings)
            if self.config.notify_url:
                notifications = load_notifications(self.config.repo / "prefect.yaml")
                apply_notifications(self.config.notify_url, notifications)

    def start_worker(self) -> ManagedProcess:
        """Start a process worker for the pool and wait until the pool reports it READY."""
        proc = self._start_worker_process()
        self._wait_worker_ready(proc)
        return proc

    def _start_worker_process(self) -> ManagedProcess:
        argv = self._prefect(
            "worker", "start", "--pool", self.config.work_pool, "--type", "process"
        )
        argv += ["--name", f"driftloop-worker-{os.getpid()}", "--install-policy", "never"]
        return self._start(WORKER, argv)

    def _wait_worker_ready(self, proc: ManagedProcess) -> None:
        deadline = time.monotonic() + self.config.startup_timeout_s
        while time.monotonic() < deadline:  # READY once a worker has sent its heartbeat
            if not proc.alive():
                raise StackError(f"worker exited during startup:\n{proc.log_tail()}")
            if prefect_api.pool_ready(self.api_url, self.config.work_pool):
                return
            time.sleep(0.25)
        raise StackError(f"worker not ready after {self.config.startup_timeout_s:.0f}s")

    def start_service(
        self, name: str, argv: list[str], *, health_url: str | None = None, cwd: Path | None = None
    ) -> ManagedProcess:
        """Start any long-running command (e.g. ``bentoml serve``) as part of this stack."""
        if name in self.processes and self.processes[name].alive():
            raise StackError(f"{name} is already running (pid {self.processes[name].record.pid})")
        proc = self._start(name, argv, cwd=cwd)
        if health_url:
            try:
                wait_http(health_url, timeout_s=self.config.startup_timeout_s, proc=proc)
            except StackError:
                self.stop_process(name)
                raise
        return proc

    def _release_events_worker(self, name: str) -> None:
        # this process's Prefect events worker must deliver before its server goes away
        if name == SERVER and name in self.processes and "prefect.events.worker" in sys.modules:
            from tasks.events import reset_events_worker

            reset_events_worker()

    def stop_process(self, name: str) -> str:
        self._release_events_worker(name)
        proc = self.processes.pop(name, None)
        outcome = proc.stop(self.config.stop_timeout_s) if proc else "not-running"
        self._save_state()
        return outcome

    def down(self) -> dict[str, str]:
        """Stop every recorded process, newest first (services, worker, then the server)."""
        outcomes = {}
        for name in reversed(list(self.processes)):
            self._release_events_worker(name)
            outcomes[name] = self.processes[name].stop(self.config.stop_timeout_s)
        self.processes.clear()
        self.state_path.unlink(missing_ok=True)
        return outcomes

    def status(self) -> dict[str, Any]:
        return {
            "api_url": self.api_url,
            "api_urls": self.api_urls,
            "api_healthy": prefect_api.api_healthy(self.api_url),
            "home": str(self.settings.root),
            "processes": {
                n: {"pid": p.record.pid, "alive": p.alive(), "log": p.record.log}
                for n, p in self.processes.items()
            },
        }

    def __enter__(self) -> LocalStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()
