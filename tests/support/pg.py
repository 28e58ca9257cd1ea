"""A throwaway PostgreSQL database per test, on the machine's server (dropped in ``finally``)."""

from __future__ import annotations

import contextlib
import os

import pytest

from tasks.postgres.db import DatabaseUnavailable, open_connection, scratch_database

ADMIN_URL = os.environ.get("DRIFTLOOP_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def temp_database(prefix: str = "driftloop_t") -> contextlib.AbstractContextManager[str]:
    """Create a uniquely named database, yield its URL, drop it (with its sessions) after."""
    try:
        open_connection(ADMIN_URL).close()
    except DatabaseUnavailable as exc:  # the machine promises PostgreSQL: fail loudly
        pytest.fail(f"PostgreSQL at {ADMIN_URL} is not reachable: {exc}")
    return scratch_database(ADMIN_URL, prefix)
