"""The reliability cases' figures reach the end-of-run summary in a serial run and from
pytest-xdist workers (``make test`` runs the suite in parallel; a module-level list in a worker
never reaches the controller that prints the summary)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.telco import REPO

INNER = """
from tests.support.figures import FIGURES


def test_one():
    FIGURES.append(("case one", {"acknowledged": 854, "lost": 0}))


def test_two():
    FIGURES.append(("case two", {"refused": 3}))
"""


@pytest.mark.parametrize("mode", [["-p", "no:xdist"], ["-n", "2"]], ids=["serial", "xdist"])
def test_figures_are_printed_at_the_end(tmp_path: Path, mode: list[str]) -> None:
    (tmp_path / "test_inner.py").write_text(INNER)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", *mode, "-p", "tests.support.figures",
         "-p", "no:cacheprovider", "--rootdir", str(tmp_path), "test_inner.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    summary = run.stdout.split("reliability figures", 1)
    assert len(summary) == 2, run.stdout[-2000:]
    lines = summary[1].splitlines()
    assert "case one: acknowledged=854, lost=0" in lines
    assert "case two: refused=3" in lines
