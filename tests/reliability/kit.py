"""Reliability kit: a service whose every process can be SIGKILLed, steady load, a small tmpfs,
and the figures each case prints.

Every server binds 127.0.0.1 on a free port; every helper that starts something stops it in a
``finally`` (the service, the load threads, the tmpfs mount).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from tasks.settings import Settings
from tests.support.figures import FIGURES
from tests.support.server import ADMIN_TOKEN
from tests.support.telco import REPO


def figures(case: str, **numbers: object) -> None:
    """Record (and print) the figures a case measured: they go to docs/reliability.md."""
    FIGURES.append((case, numbers))
    print(f"[figures] {case}: " + ", ".join(f"{k}={v}" for k, v in numbers.items()))


def port_free(port: int) -> bool:
    """Whether a server could listen on ``port`` now (SO_REUSEADDR, as uvicorn binds: the
    TIME_WAIT connections of a killed server do not count, a live listener does)."""
    import socket

    with contextlib.closing(socket.socket()) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_port_free(port: int, timeout: float) -> float:
    """Seconds until ``port`` can be bound again (raises after ``timeout``)."""
    t0 = time.monotonic()
    while not port_free(port):
        if time.monotonic() - t0 > timeout:
            holders = [c.pid for c in psutil.net_connections("tcp") if c.laddr.port == port]
            raise AssertionError(f"port {port} still held after {timeout}s by {holders}")
        time.sleep(0.05)
    return time.monotonic() - t0


class Service:
    """``python -m driftloop serve`` on a fixed loopback port, restartable, killable whole."""

    def __init__(self, home: Path, port: int, env: dict[str, str] | None = None):
        self.home, self.port = home, port
        self.url = f"http://127.0.0.1:{port}"
        self.settings = Settings(home=home)
        self.env = {
            **os.environ,
            "DRIFTLOOP_HOME": str(home),
            "BENTOML_HOME": str(self.settings.bentoml_home),
            "DRIFTLOOP_ADMIN_TOKEN": ADMIN_TOKEN,
            "DRIFTLOOP_PREDLOG_FLUSH_SECONDS": "0.5",
            **(env or {}),
        }
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> Service:
        self.starts += 1
        log = open(self.home / f"serve-{self.starts}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "driftloop", "serve", "--port", str(self.port)],
            cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        return self

    def log(self) -> str:
        return (self.home / f"serve-{self.starts}.log").read_text(errors="replace")[-3000:]

    def wait_ready(self, timeout: float = 120) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"service exited:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return time.monotonic() - t0
            time.sleep(0.1)
        raise TimeoutError(f"service not ready in {timeout}s:\n{self.log()}")

    def processes(self) -> list[psutil.Process]:
        """The service's processes: the serve process and every descendant."""
        if self.proc is None:
            return []
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def rss_mb(self) -> float:
        total = 0
        for p in self.processes():
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total / 2**20

    def kill_all(self) -> int:
        """SIGKILL every process of the service at once; return how many there were."""
        procs = self.processes()
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=10)
        psutil.wait_procs(procs, timeout=10)
        return len(procs)

    def kill_main(self) -> None:
        """SIGKILL only the ``driftloop serve`` process (what ``kill -9 <pid>`` does)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM (a clean stop flushes the logs), then SIGKILL whatever is left."""
        procs = self.processes()
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=30)
        _gone, alive = psutil.wait_procs(procs, timeout=10)
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()


@dataclass
class Load:
    """Steady /predict load from ``threads`` clients; keeps every request id answered 200."""

    url: str
    records: list[dict]
    threads: int = 4
    acked: list[str] = field(default_factory=list)
    failed: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def _run(self, k: int) -> None:
        rows = itertools.cycle(self.records[k::self.threads])  # fmt: skip
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self._stop.is_set():
                try:
                    r = client.post("/predict", json={"records": [next(rows)]})
                except httpx.HTTPError:
                    self.failed += 1
                    time.sleep(0.05)
                    continue
                if r.status_code == 200:
                    self.acked.extend(p["request_id"] for p in r.json()["predictions"])
                else:
                    self.failed += 1

    def __enter__(self) -> Load:
        for k in range(self.threads):
            t = threading.Thread(target=self._run, args=(k,), daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(timeout=15)


@contextlib.contextmanager
def small_disk(size_mb: int) -> Iterator[Path]:
    """A tmpfs of ``size_mb`` MiB mounted for the block (root only), unmounted after."""
    mount = Path(tempfile.mkdtemp(prefix="driftloop-fulldisk-"))
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(mount)], check=True
    )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        shutil.rmtree(mount, ignore_errors=True)


def fill(disk: Path, leave_bytes: int = 0) -> Path:
    """Fill ``disk`` until only ``leave_bytes`` are free; return the filler file."""
    filler = disk / "filler.bin"
    free = shutil.disk_usage(disk).free - leave_bytes
    with open(filler, "ab") as fh:
        chunk = b"\0" * 2**20
        while free > 0:
            try:
                fh.write(chunk[: min(len(chunk), free)])
                fh.flush()
            except OSError:
                break
            free -= len(chunk)
    return filler


def can_mount() -> bool:
    return os.geteuid() == 0 and shutil.which("mount") is not None
