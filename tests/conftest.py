"""Shared test fixtures.

The session gets its own temporary ``DRIFTLOOP_HOME`` (nothing is written outside it), W&B is
disabled unless a test turns offline mode on, and Prefect points at a throwaway home. Fixtures
that start servers live next to the tests that need them; shared ones (homes, Telco frames,
tiny models, homes with a champion) come from :mod:`tests.support.fixtures`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

pytest_plugins = ["tests.support.fixtures", "tests.support.figures"]

_SESSION_HOME: Path | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _SESSION_HOME
    # Always a fresh directory made here, so cleanup can never reach anything else.
    _SESSION_HOME = Path(tempfile.mkdtemp(prefix="driftloop-test-"))
    home = _SESSION_HOME
    os.environ["DRIFTLOOP_HOME"] = str(home)
    os.environ.setdefault("WANDB_MODE", "disabled")
    os.environ["WANDB_SILENT"] = "true"
    os.environ["WHYLOGS_NO_ANALYTICS"] = "True"
    os.environ["PREFECT_HOME"] = str(home / "prefect")
    os.environ["BENTOML_HOME"] = str(home / "bentoml")
    os.environ["WANDB_DIR"] = str(home / "wandb")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    # flows run in this process beat as the servers' crash detection expects (before Prefect
    # loads its settings; Prefect's own default, 180 s, is longer than the detection window)
    from tasks.settings import Settings

    heartbeat = "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"
    os.environ[heartbeat] = Settings(home=home).library_env()[heartbeat]


def pytest_unconfigure(config: pytest.Config) -> None:
    home = _SESSION_HOME
    if (
        home is not None
        and home.name.startswith("driftloop-test-")
        and home.parent == Path(tempfile.gettempdir())
        and not os.environ.get("DRIFTLOOP_TEST_KEEP")
    ):
        shutil.rmtree(home, ignore_errors=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In a pytest-xdist worker, modules with an ``e2e`` or ``slow`` test go first (the order
    within them, and among the rest, kept). ``make test`` hands whole modules to workers in
    collection order (``--dist loadfile --no-loadscope-reorder``): the minute-long modules
    (demo runs, namespaces, killed services) start at once and the short ones fill in around
    them, rather than one of them starting when the other workers are done. (xdist's own
    reorder, most tests first, put exactly those few-test modules last.) Every worker
    collects the same order; a run without xdist keeps the files' order."""
    if not hasattr(config, "workerinput"):
        return
    heavy = {
        item.path
        for item in items
        if item.get_closest_marker("e2e") or item.get_closest_marker("slow")
    }
    items.sort(key=lambda item: item.path not in heavy)  # stable: only heavy modules move up
