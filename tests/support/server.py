"""A real ``driftloop serve`` (bentoml serve) subprocess on a loopback port."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from tasks.settings import Settings
from tests.support.telco import REPO

ADMIN_TOKEN = "test-admin-token"


def make_home(prefix: str) -> Path:
    """A fresh temporary directory to use as a server's DRIFTLOOP_HOME."""
    return Path(tempfile.mkdtemp(prefix=f"driftloop-{prefix}-"))


class Server:
    """A running ``driftloop serve`` (bentoml serve) subprocess."""

    def __init__(
        self, home: Path, port: int, extra_env: dict[str, str] | None = None, workers: int = 1
    ):
        self.home = home
        self.settings = Settings(home=home)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "DRIFTLOOP_HOME": str(home),
            "BENTOML_HOME": str(self.settings.bentoml_home),
            "DRIFTLOOP_ADMIN_TOKEN": ADMIN_TOKEN,
            "DRIFTLOOP_PREDLOG_FLUSH_SECONDS": "0.5",
            **(extra_env or {}),
        }
        self.log_path = home / "server.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            ["uv", "run", "--frozen", "driftloop", "serve", "--port", str(port)]
            + ["--workers", str(workers)],
            cwd=REPO,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: teardown reaches every worker
        )
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None or "Application startup failed" in self.log():
                raise RuntimeError(f"server failed to start:\n{self.log()}")
            try:
                if self.client.get("/readyz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"server not ready in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Signal the group, wait, escalate to SIGKILL; return the exit code."""
        self.client.close()
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        # workers left behind would keep the port: make sure the group is gone
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._log.close()
        return self.proc.returncode


def predict(server: Server, records: list[dict]) -> httpx.Response:
    return server.client.post("/predict", json={"records": records})
