"""Interrupting the demo stops everything it started: no process is left running."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tasks.settings import Settings

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("sig", [signal.SIGINT])
def test_interrupted_demo_leaves_nothing_running(tmp_path: Path, sig: int) -> None:
    home = tmp_path / "demo"
    env = {**os.environ, "DRIFTLOOP_HOME": str(tmp_path / "cli-home")}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "driftloop", "demo", "--fast", "--home", str(home)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    state = Settings(home=home).stack_state
    pids: list[int] = []
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and not pids:  # wait until the stack has a process
            if state.exists():
                with contextlib.suppress(ValueError, KeyError):
                    pids = [p["pid"] for p in json.loads(state.read_text())["processes"]]
            assert proc.poll() is None, proc.stderr.read()[-2000:]
            time.sleep(0.5)
        assert pids, "the demo never started its stack"
        children = [c.pid for p in pids for c in psutil.Process(p).children(recursive=True)]
        proc.send_signal(sig)
        assert proc.wait(timeout=120) == 130
        stderr = proc.stderr.read()
        assert "everything the demo started was stopped" in stderr
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(1)
    alive = [p for p in pids + children if psutil.pid_exists(p)
             and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]  # fmt: skip
    assert alive == [], alive
