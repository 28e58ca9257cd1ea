"""The local stack: a Prefect server (SQLite under ``DRIFTLOOP_HOME``), a process work pool with
the deployments of ``prefect.yaml``, a worker, and any other long-running service (e.g. a
``bentoml serve`` command) on loopback.

Every process starts in its own process group and is recorded (pid, group, start time) in
``$DRIFTLOOP_HOME/stack/state.json``, so ``driftloop stack down`` from another shell can stop it.
Stopping sends SIGTERM to the group, waits, then SIGKILLs the group and any stray descendant:
``prefect worker start`` does not always exit promptly on SIGTERM, and nothing may be left running.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
from pydantic import BaseModel, Field

from tasks.settings import Settings, get_settings

REPO = Path(__file__).resolve().parents[1]
DEFAULT_POOL = "driftloop-process"
SERVER, WORKER = "prefect-server", "prefect-worker"


class StackError(RuntimeError):
    """A stack process failed to start or become healthy (the message carries its log tail)."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass(frozen=True)
class ProcessRecord:
    """What is needed to find (and safely stop) a process started by an earlier invocation."""

    name: str
    pid: int
    pgid: int
    create_time: float
    argv: list[str]
    log: str


class ManagedProcess:
    """One long-running command in its own process group, logging to a file."""

    def __init__(self, record: ProcessRecord, popen: subprocess.Popen | None = None):
        self.record = record
        self._popen = popen

    @classmethod
    def start(
        cls, name: str, argv: list[str], *, env: dict[str, str], cwd: Path, log_path: Path
    ) -> ManagedProcess:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own session and process group
            )
        created = psutil.Process(popen.pid).create_time()
        record = ProcessRecord(name, popen.pid, popen.pid, created, list(argv), str(log_path))
        return cls(record, popen)

    def _process(self) -> psutil.Process | None:
        """The recorded process if it still runs (and is not a recycled pid)."""
        if self._popen is not None:
            self._popen.poll()  # reap our own child so it does not linger as a zombie
        try:
            proc = psutil.Process(self.record.pid)
            if abs(proc.create_time() - self.record.create_time) > 1.0:
                return None
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc
        except psutil.Error:
            return None

    def alive(self) -> bool:
        return self._process() is not None

    def _members(self) -> list[psutil.Process]:
        """Live processes of our group plus descendants that moved to another group."""
        found: dict[int, psutil.Process] = {}
        root = self._process()
        if root is not None:
            with contextlib.suppress(psutil.Error):
                for child in [root, *root.children(recursive=True)]:
                    found[child.pid] = child
        for proc in psutil.process_iter():
            with contextlib.suppress(psutil.Error, OSError):
                if os.getpgid(proc.pid) == self.record.pgid and proc.pid not in found:
                    found[proc.pid] = proc
        live = []
        for proc in found.values():
            with contextlib.suppress(psutil.Error):
                if proc.status() != psutil.STATUS_ZOMBIE:
                    live.append(proc)
        return live

    def stop(self, timeout_s: float = 10.0, kill_timeout_s: float = 5.0) -> str:
        """SIGTERM the group, wait ``timeout_s``, then SIGKILL whatever is left.

        Returns ``not-running``, ``terminated`` or ``killed``.
        """
        members = self._members()
        if not members:
            return "not-running"
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.record.pgid, signal.SIGTERM)
        for proc in members:  # descendants that left the group get the signal directly
            with contextlib.suppress(psutil.Error, OSError):
                if os.getpgid(proc.pid) != self.record.pgid:
                    proc.terminate()
        _, alive = psutil.wait_procs(members, timeout=timeout_s)
        if self._popen is not None:
            self._popen.poll()
        alive = [p for p in alive if p.is_running()] + [
            p for p in self._members() if p not in alive
        ]
        if not alive:
            return "terminated"
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.record.pgid, signal.SIGKILL)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(alive, timeout=kill_timeout_s)
        if self._popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._popen.wait(timeout=kill_timeout_s)
        return "killed"


def api_call(method: str, url: str, timeout_s: float = 60.0, **kwargs: Any) -> httpx.Response:
    """One Prefect API call, retried while the server is briefly unavailable (its SQLite
    database answers 503 under load) or not answering yet."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            resp = httpx.request(method, url, timeout=15, **kwargs)
        except (httpx.TransportError, httpx.TimeoutException):
            if time.monotonic() > deadline:
                raise
        else:
            if resp.status_code not in (502, 503, 504) or time.monotonic() > deadline:
                resp.raise_for_status()
                return resp
        time.sleep(0.5)


def wait_http(
    url: str, *, timeout_s: float, proc: ManagedProcess | None = None, ok=lambda r: r.is_success
) -> None:
    """Poll ``url`` until it answers ``ok`` (raise StackError on timeout or if ``proc`` dies)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise StackError(
                f"{proc.record.name} exited during startup:\n{_tail(Path(proc.record.log))}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if ok(httpx.get(url, timeout=2.0)):
                return
        time.sleep(0.25)
    tail = _tail(Path(proc.record.log)) if proc else ""
    raise StackError(f"{url} not healthy after {timeout_s:.0f}s\n{tail}")


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
    repo: Path = REPO
    startup_timeout_s: float = 120.0
    stop_timeout_s: float = 10.0


class LocalStack:
    """Start, inspect and stop the local Prefect stack (and extra services) for one home."""

    def __init__(self, settings: Settings | None = None, config: StackConfig | None = None):
        self.settings = settings or get_settings()
        self.config = config or StackConfig()
        self.processes: dict[str, ManagedProcess] = {}
        self.api_url: str | None = None
        self._load_state()

    # --- state ------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.settings.root / "stack" / "state.json"

    @property
    def logs_dir(self) -> Path:
        return self.settings.root / "stack" / "logs"

    def _load_state(self) -> None:
        try:
            state = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return
        self.api_url = state.get("api_url")
        for rec in state.get("processes", []):
            self.processes[rec["name"]] = ManagedProcess(ProcessRecord(**rec))

    def _save_state(self) -> None:
        from tasks.io import atomic_write

        state = {
            "api_url": self.api_url,
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
            "PREFECT_SERVER_DATABASE_CONNECTION_URL",
            f"sqlite+aiosqlite:///{s.prefect_home / 'prefect.db'}",
        )
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

    def _run(self, name: str, argv: list[str], timeout_s: float) -> None:
        log = self.logs_dir / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            try:
                rc = subprocess.run(
                    argv,
                    cwd=self.config.repo,
                    env=self.env(),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=timeout_s,
                    start_new_session=True,
                ).returncode
            except subprocess.TimeoutExpired:
                raise StackError(
                    f"{name} timed out after {timeout_s:.0f}s:\n{_tail(log)}"
                ) from None
        if rc != 0:
            raise StackError(f"{name} failed (exit {rc}):\n{_tail(log)}")

    def _start(self, name: str, argv: list[str], cwd: Path | None = None) -> ManagedProcess:
        proc = ManagedProcess.start(
            name,
            argv,
            env=self.env(),
            cwd=cwd or self.config.repo,
            log_path=self.logs_dir / f"{name}.log",
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
            if worker is not None:
                self._wait_worker_ready(worker)
            timings["total_s"] = time.monotonic() - t0
        except BaseException:
            self.down()
            raise
        return {**self.status(), "timings": {k: round(v, 2) for k, v in timings.items()}}

    def start_server(self) -> ManagedProcess:
        port = self.config.port or free_port(self.config.host)
        self.api_url = f"http://{self.config.host}:{port}/api"
        argv = self._prefect("server", "start", "--host", self.config.host, "--port", str(port))
        argv += ["--ui" if self.config.ui else "--no-ui", "--analytics-off"]
        proc = self._start(SERVER, argv)
        wait_http(f"{self.api_url}/health", timeout_s=self.config.startup_timeout_s, proc=proc)
        return proc

    def create_pool(self) -> None:
        """Create the process work pool through the API (idempotent)."""
        from prefect.workers.process import ProcessWorker

        body = {
            "name": self.config.work_pool,
            "type": "process",
            "base_job_template": ProcessWorker.get_default_base_job_template(),
        }
        try:
            api_call("POST", f"{self.api_url}/work_pools/", json=body)
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code != 409:  # 409: it exists already
                raise StackError(
                    f"creating work pool {self.config.work_pool!r}: {exc.response.text}"
                ) from None

    def deploy(self) -> None:
        names = self.config.deployments
        selection = ["--all"] if not names else [a for n in names for a in ("--name", n)]
        self._run("deploy", self._prefect("--no-prompt", "deploy", *selection), timeout_s=300)

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
        url = f"{self.api_url}/work_pools/{self.config.work_pool}"
        deadline = time.monotonic() + self.config.startup_timeout_s
        while time.monotonic() < deadline:  # READY once a worker has sent its heartbeat
            if not proc.alive():
                raise StackError(f"worker exited during startup:\n{_tail(Path(proc.record.log))}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2.0).json().get("status") == "READY":
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
        healthy = False
        if self.api_url:
            with contextlib.suppress(httpx.HTTPError):
                healthy = httpx.get(f"{self.api_url}/health", timeout=2.0).is_success
        return {
            "api_url": self.api_url,
            "api_healthy": healthy,
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


# --- what the benchmark and the tests read back from the API ---------------------------


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def deployment_runs(
    api_url: str, deployment: str = "retrain/retrain", since: datetime | None = None
) -> list[dict[str, Any]]:
    """Flow runs of ``flow/deployment`` created at or after ``since``, oldest first, with
    their state, parameters and the timestamps a latency measurement needs."""
    dep = httpx.get(f"{api_url}/deployments/name/{deployment}", timeout=10.0)
    dep.raise_for_status()
    body = {"flow_runs": {"deployment_id": {"any_": [dep.json()["id"]]}}, "limit": 200}
    resp = httpx.post(f"{api_url}/flow_runs/filter", json=body, timeout=10.0)
    resp.raise_for_status()
    runs = []
    for run in resp.json():
        created = _ts(run["created"])
        if since is not None and created is not None and created < since:
            continue
        state = run.get("state") or {}
        runs.append(
            {
                "id": run["id"],
                "name": run["name"],
                "state_type": state.get("type"),
                "state_name": state.get("name"),
                "created": created,
                "expected_start_time": _ts(run.get("expected_start_time")),
                "start_time": _ts(run.get("start_time")),
                "end_time": _ts(run.get("end_time")),
                "parameters": run.get("parameters") or {},
            }
        )
    return sorted(runs, key=lambda r: r["created"])


def retrain_timeline(
    api_url: str,
    settings: Settings | None = None,
    name: str = "telco",
    since: datetime | None = None,
) -> list[dict[str, Any]]:
    """For each retrain run since ``since``: the triggering event's time (from the API), the
    run's created/start/end times and state, and when the champion alias moved during the run
    (alias-index history, 1 s resolution). Seconds ``event_to_start_s`` / ``start_to_champion_s``
    are the loop latencies the system benchmark reports."""
    from tasks.registry import read_index

    history = read_index(settings or get_settings()).get(name, {}).get("history", [])
    moves = [_ts(h["time"]) for h in history if h["alias"] == "champion"]
    out = []
    for run in deployment_runs(api_url, since=since):
        event_id = (run["parameters"].get("trigger") or {}).get("event_id")
        occurred = None
        if event_id:
            body = {"filter": {"id": {"id": [event_id]}}, "limit": 1}
            found = httpx.post(f"{api_url}/events/filter", json=body, timeout=10.0).json()
            occurred = _ts(found["events"][0]["occurred"]) if found.get("events") else None
        start, end = run["start_time"], run["end_time"]
        moved = next((m for m in moves if start and m and start.replace(microsecond=0) <= m
                      and (end is None or m <= end)), None)  # fmt: skip
        out.append(
            {
                **{k: run[k] for k in ("id", "name", "state_type", "created", "start_time")},
                "end_time": end,
                "event_id": event_id,
                "event_occurred": occurred,
                "champion_moved_at": moved,
                "event_to_start_s": (start - occurred).total_seconds()
                if start and occurred
                else None,
                "start_to_champion_s": (moved - start).total_seconds() if moved and start else None,
            }
        )
    return out
