"""Pytest fixtures shared by every test directory (registered in ``tests/conftest.py``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tasks.settings import Settings
from tests.support.homes import ChampionHome, tiny_champion_home
from tests.support.models import TinyModels
from tests.support.models import tiny_models as _tiny_models
from tests.support.telco import TELCO_CSV


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty DRIFTLOOP_HOME for one test (library env vars follow it, and are restored)."""
    path = tmp_path / "home"
    for key, value in Settings(home=path).library_env().items():
        if key != "PREFECT_HOME":  # the session's Prefect server keeps its own home
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("PREFECT_HOME", os.environ["PREFECT_HOME"])
    return path


@pytest.fixture
def home_settings(home: Path) -> Settings:
    """Settings of the test's fresh ``home`` (nothing created on disk yet)."""
    return Settings(home=home)


@pytest.fixture(scope="session")
def telco_csv() -> Path:
    return TELCO_CSV


@pytest.fixture(scope="session")
def tiny_models() -> TinyModels:
    """Two tiny Telco boosters (A and B) and 400 held-out rows, trained once per session."""
    return _tiny_models()


@pytest.fixture
def champion_home(home_settings: Settings, tiny_models: TinyModels) -> ChampionHome:
    """The test's ``home`` with tiny model A as telco champion and B stored (no challenger)."""
    return tiny_champion_home(home_settings, tiny_models)


@pytest.fixture
def champion_challenger_home(home_settings: Settings, tiny_models: TinyModels) -> ChampionHome:
    """The test's ``home`` with tiny model A as telco champion and B as challenger."""
    return tiny_champion_home(home_settings, tiny_models, challenger=True)


@pytest.fixture(scope="session")
def prefect_harness():
    """A real, temporary Prefect server (SQLite) for the session, with the stack's crash
    detection (a run whose heartbeat stops becomes Crashed); opt-in per test."""
    from prefect.testing.utilities import prefect_test_harness

    from driftloop.automations import apply_crash_detection

    with prefect_test_harness(server_startup_timeout=120):
        apply_crash_detection(Settings())
        yield


@pytest.fixture
def pg_url():
    """A fresh database on the machine's PostgreSQL for one test, dropped afterwards."""
    from tests.support.pg import temp_database

    with temp_database() as url:
        yield url
