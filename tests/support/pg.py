"""A throwaway PostgreSQL database per test, on the machine's server (dropped in ``finally``)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest

ADMIN_URL = os.environ.get("DRIFTLOOP_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _admin():
    import psycopg2

    try:
        conn = psycopg2.connect(ADMIN_URL, connect_timeout=5)
    except psycopg2.OperationalError as exc:  # the machine promises PostgreSQL: fail loudly
        pytest.fail(f"PostgreSQL at {ADMIN_URL} is not reachable: {exc}")
    conn.autocommit = True
    return conn


@contextlib.contextmanager
def temp_database(prefix: str = "driftloop_t") -> Iterator[str]:
    """Create a uniquely named database, yield its URL, drop it (with its sessions) after."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    conn = _admin()
    try:
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        try:
            yield ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
        finally:
            with conn.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        conn.close()
