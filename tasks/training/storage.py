"""Where Optuna studies live: a storage object for a URL (SQLite tuned for many small
commits, PostgreSQL on the installed driver), and URLs with their password hidden."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna


HEARTBEAT_S = 10  # a running trial's heartbeat on a shared (PostgreSQL) study (at most)
STALE_RETRIES = 3


def open_storage(url: str | None) -> optuna.storages.BaseStorage | str | None:
    """An Optuna storage for ``url`` (``None``: in memory). A SQLite file is switched to WAL
    mode with ``synchronous=NORMAL``: its default rollback journal costs ~12 ms per commit
    here, and a study commits several times per trial (params, reports, state).

    A PostgreSQL study is the one several workers share: running trials send heartbeats, and
    a trial whose worker stopped beating (killed, host lost) for ``optuna_stale_after_s`` is
    failed by the next worker that starts a trial and enqueued again with the same
    parameters, so no trial is lost."""
    if url is not None and url.startswith("postgresql://"):
        return shared_storage(url)
    if url is None or not url.startswith("sqlite:///"):
        return url
    import sqlite3

    import optuna
    from sqlalchemy import event

    from tasks.io import locked

    path = Path(url.removeprefix("sqlite:///"))
    path.parent.mkdir(parents=True, exist_ok=True)
    # Optuna creates the tables and stamps their alembic version when a storage opens: two
    # processes opening one new file at once (two workers' first trainings) raced to a
    # UNIQUE constraint failure on alembic_version. One opener at a time per file.
    with locked(path.with_name(path.name + ".lock")):
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.execute("PRAGMA journal_mode=WAL")  # persistent: stored in the database file
        storage = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
    event.listen(storage.engine, "connect", _sqlite_pragmas)
    storage.engine.dispose()  # connections made before the listener reconnect with it
    return storage


def shared_storage(
    url: str, heartbeat_s: int | None = None, stale_after_s: int | None = None
) -> optuna.storages.RDBStorage:
    """A PostgreSQL study storage with heartbeats and stale-trial retry (see open_storage).
    ``stale_after_s`` defaults to the ``optuna_stale_after_s`` setting; the heartbeat to a
    quarter of it (at most ``HEARTBEAT_S``)."""
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    if stale_after_s is None:
        from tasks.settings import get_settings

        stale_after_s = get_settings().optuna_stale_after_s
    heartbeat_s = heartbeat_s or max(1, min(HEARTBEAT_S, stale_after_s // 4))

    return optuna.storages.RDBStorage(
        _postgres_driver(url), heartbeat_interval=heartbeat_s, grace_period=stale_after_s,
        heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=STALE_RETRIES),
    )  # fmt: skip


def _postgres_driver(url: str) -> str:
    """SQLAlchemy 2.1 maps ``postgresql://`` to psycopg 3; the locked env ships psycopg2."""
    import importlib.util

    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2"):
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")


def redact(url: str | None) -> str | None:
    """``url`` with its password hidden (for lineage, cards and logs)."""
    if not url or "://" not in url or "@" not in url:
        return url
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
