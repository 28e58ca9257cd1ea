"""Connections and driftloop's versioned schema on PostgreSQL.

Everything lives in one PostgreSQL schema, ``driftloop``. Its layout is a list of numbered
migrations applied in order, in one transaction under an advisory lock (two replicas starting
at once apply each step once; a failed step leaves the schema as it was);
``driftloop.schema_version`` records what was applied.
A new column of a record is a new migration appended here, never an edit of an applied one.
The dataset's input columns of the prediction log are added by the writer as they appear
(``tasks.postgres.log``), since they come from whatever contract the service serves. The logs'
time index is a BRIN index: rows arrive in about time order, and a BRIN index costs a COPY
next to nothing to keep up (a B-tree on ``ts`` cost one measured COPY a third of its rate).
For the same reason the logs have no primary key: ``seq`` (an identity, unique by
construction) only breaks ties in time order, and its B-tree cost 10-20% of the rows/s of a
binary COPY.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from psycopg2.extensions import connection as Connection

SCHEMA = "driftloop"
_MIGRATION_LOCK = 0x64726966  # pg_advisory_xact_lock key of schema changes ("drif")


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sql: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "prediction and feedback logs (schemas.records columns; inputs added by the writer)",
        """
        CREATE TABLE driftloop.predictions (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            request_id text,
            entity_id text,
            ts timestamptz,
            model_tag text,
            score double precision,
            decision boolean,
            shadow_tag text,
            shadow_score double precision,
            latency_ms double precision
        );
        CREATE INDEX predictions_ts ON driftloop.predictions USING brin (ts);
        CREATE TABLE driftloop.feedback (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            request_id text,
            entity_id text,
            label double precision,
            ts timestamptz
        );
        CREATE INDEX feedback_ts ON driftloop.feedback USING brin (ts);
        """,
    ),
    Migration(
        2,
        "alias index: models (champion stack), aliases, alias history",
        """
        CREATE TABLE driftloop.models (
            name text PRIMARY KEY,
            champions jsonb,
            extra jsonb NOT NULL DEFAULT '{}'
        );
        CREATE TABLE driftloop.aliases (
            name text NOT NULL REFERENCES driftloop.models ON DELETE CASCADE,
            alias text NOT NULL,
            tag text NOT NULL,
            PRIMARY KEY (name, alias)
        );
        CREATE TABLE driftloop.alias_history (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name text NOT NULL REFERENCES driftloop.models ON DELETE CASCADE,
            entry jsonb NOT NULL
        );
        CREATE INDEX alias_history_name ON driftloop.alias_history (name, seq);
        """,
    ),
    Migration(
        3,
        "the prediction log's arm (champion or challenger; rollouts)",
        "ALTER TABLE driftloop.predictions ADD COLUMN arm text;",
    ),
    Migration(
        4,
        "the logs' seq only orders rows: no primary-key index to update per written row",
        """
        ALTER TABLE driftloop.predictions DROP CONSTRAINT predictions_pkey;
        ALTER TABLE driftloop.feedback DROP CONSTRAINT feedback_pkey;
        """,
    ),
)
LATEST = MIGRATIONS[-1].version


def dsn(url: str) -> str:
    """A libpq URL from a SQLAlchemy-style one (``postgresql+psycopg2://`` -> ``postgresql://``)."""
    return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", url)


@contextlib.contextmanager
def connect(url: str) -> Iterator[Connection]:
    """A connection in UTC; committed on a clean exit of the block, rolled back otherwise."""
    conn = open_connection(url)
    try:
        with conn:  # psycopg2: commit or roll back the transaction (does not close)
            yield conn
    finally:
        conn.close()


class DatabaseUnavailable(RuntimeError):
    """PostgreSQL cannot be reached at the configured URL."""


def open_connection(url: str) -> Connection:
    import psycopg2

    try:
        return psycopg2.connect(dsn(url), options="-c timezone=UTC", connect_timeout=10)
    except psycopg2.OperationalError as exc:
        where = dsn(url).rpartition("@")[2]  # never the password
        raise DatabaseUnavailable(f"PostgreSQL at {where}: {str(exc).strip()}") from None


@contextlib.contextmanager
def scratch_database(admin_url: str, prefix: str) -> Iterator[str]:
    """A new, uniquely named database on ``admin_url``'s server (for one test or benchmark run):
    yield its URL, then drop it with any sessions still on it."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    conn = open_connection(admin_url)
    conn.autocommit = True  # CREATE/DROP DATABASE cannot run inside a transaction
    try:
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        try:
            yield admin_url.rsplit("/", 1)[0] + f"/{name}"
        finally:
            with conn.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        conn.close()


def schema_version(conn: Connection) -> int:
    """The latest migration applied (0 on a fresh database)."""
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('driftloop.schema_version') IS NOT NULL")
        if not cur.fetchone()[0]:
            return 0
        cur.execute("SELECT coalesce(max(version), 0) FROM driftloop.schema_version")
        return int(cur.fetchone()[0])


def migrate(url: str, target: int = LATEST) -> int:
    """Apply every migration up to ``target`` not yet applied; return the version now in place."""
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        cur.execute(
            f"CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_version ("
            " version integer PRIMARY KEY, description text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        current = schema_version(conn)
        for step in MIGRATIONS:
            if current < step.version <= target:
                cur.execute(step.sql)
                cur.execute(
                    f"INSERT INTO {SCHEMA}.schema_version (version, description) VALUES (%s, %s)",
                    (step.version, step.description),
                )
                current = step.version
        return current


_migrated: set[str] = set()


def ensure_schema(url: str) -> None:
    """:func:`migrate` once per process and URL (cheap to call before every use)."""
    if url not in _migrated:
        migrate(url)
        _migrated.add(url)
