"""Process supervision for the local stack: each long-running command in its own process group,
logging to a file, recorded so another invocation can find it and stop it for sure.

Stopping sends SIGTERM to the group, waits, then SIGKILLs the group and any stray descendant:
``prefect worker start`` does not always exit promptly on SIGTERM, and nothing may be left running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil

T = TypeVar("T")


class StackError(RuntimeError):
    """A stack process failed to start or become healthy (the message carries its log tail)."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` of a log file (for error messages)."""
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


@contextlib.contextmanager
def _logged_child(log_path: Path, *, env: dict[str, str], cwd: Path) -> Iterator[dict[str, Any]]:
    """The keyword arguments every child of the stack starts with: its own session and process
    group, no stdin, stdout and stderr appended to ``log_path`` (open while the block runs)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        yield {
            "cwd": cwd,
            "env": env,
            "stdin": subprocess.DEVNULL,
            "stdout": log,
            "stderr": subprocess.STDOUT,
            "start_new_session": True,
        }


class ManagedProcess:
    """One long-running command in its own process group, logging to a file."""

    def __init__(self, record: ProcessRecord, popen: subprocess.Popen | None = None):
        self.record = record
        self._popen = popen

    @classmethod
    def start(
        cls, name: str, argv: list[str], *, env: dict[str, str], cwd: Path, log_path: Path
    ) -> ManagedProcess:
        with _logged_child(log_path, env=env, cwd=cwd) as how:
            popen = subprocess.Popen(argv, **how)
        created = psutil.Process(popen.pid).create_time()
        record = ProcessRecord(name, popen.pid, popen.pid, created, list(argv), str(log_path))
        return cls(record, popen)

    def log_tail(self) -> str:
        return tail(Path(self.record.log))

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


def run_logged(
    name: str, argv: list[str], *, env: dict[str, str], cwd: Path, log_path: Path, timeout_s: float
) -> None:
    """Run a command to completion in its own session, appending its output to ``log_path``;
    raise :class:`StackError` (with the log tail) if it fails or times out."""
    with _logged_child(log_path, env=env, cwd=cwd) as how:
        try:
            rc = subprocess.run(argv, timeout=timeout_s, **how).returncode
        except subprocess.TimeoutExpired:
            raise StackError(
                f"{name} timed out after {timeout_s:.0f}s:\n{tail(log_path)}"
            ) from None
    if rc != 0:
        raise StackError(f"{name} failed (exit {rc}):\n{tail(log_path)}")


def wait_http(
    url: str, *, timeout_s: float, proc: ManagedProcess | None = None, ok=lambda r: r.is_success
) -> None:
    """Poll ``url`` until it answers ``ok`` (raise StackError on timeout or if ``proc`` dies)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise StackError(f"{proc.record.name} exited during startup:\n{proc.log_tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if ok(httpx.get(url, timeout=2.0)):
                return
        time.sleep(0.25)
    log = proc.log_tail() if proc else ""
    raise StackError(f"{url} not healthy after {timeout_s:.0f}s\n{log}")


def wait_for(
    predicate: Callable[[], T], timeout_s: float, every_s: float = 0.5, what: str = "condition"
) -> T:
    """Poll ``predicate`` until it returns something truthy; return that (TimeoutError if not)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    raise TimeoutError(f"gave up waiting for {what} after {timeout_s:.0f}s")
