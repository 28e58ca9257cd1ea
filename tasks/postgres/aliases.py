"""The alias index on PostgreSQL: the same ``{name: entry}`` shape as ``models/index.json``.

An entry is ``{"aliases": {alias: tag}, "history": [move, ...], "champions": [tag, ...]}``
(plus any other keys, kept as they are). Tables: ``models`` (one row per model name: the
champion stack and the other keys), ``aliases`` (name, alias, tag) and ``alias_history``
(one row per move, in order). A read-modify-write holds the model's row lock in one
transaction: two hosts moving aliases of one model take turns, and a failure anywhere in
the block rolls the whole change back, as the file index keeps its old file.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from tasks.postgres.db import connect, ensure_schema, open_connection

if TYPE_CHECKING:
    from psycopg2.extensions import connection as Connection
    from psycopg2.extensions import cursor as Cursor

_OWN_KEYS = ("aliases", "history", "champions")


def _json(value: Any):
    from psycopg2.extras import Json

    from tasks.io import dumps

    return Json(value, dumps=dumps)


def entries(cur: Cursor, name: str | None = None) -> dict[str, dict[str, Any]]:
    where, params = ("WHERE name = %s", (name,)) if name is not None else ("", ())
    cur.execute(f"SELECT name, champions, extra FROM driftloop.models {where}", params)
    index: dict[str, dict[str, Any]] = {}
    for model, champions, extra in cur.fetchall():
        entry: dict[str, Any] = {"aliases": {}, "history": []}
        if champions is not None:
            entry["champions"] = champions
        index[model] = {**entry, **extra}
    cur.execute(f"SELECT name, alias, tag FROM driftloop.aliases {where} ORDER BY alias", params)
    for model, alias, tag in cur.fetchall():
        index[model]["aliases"][alias] = tag
    cur.execute(f"SELECT name, entry FROM driftloop.alias_history {where} ORDER BY seq", params)
    for model, move in cur.fetchall():
        index[model]["history"].append(move)
    return index


def read_index(url: str) -> dict[str, dict[str, Any]]:
    """The whole alias index (one consistent snapshot)."""
    ensure_schema(url)
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        return entries(cur)


_polls: dict[str, Connection] = {}  # one autocommit connection per URL for signature()
_polls_lock = threading.Lock()


def signature(url: str) -> tuple[int, int]:
    """The last alias move's sequence number and the count of moves: changes with every move.
    Cheap enough to poll twice a second (one kept connection, one index-only query)."""
    ensure_schema(url)
    with _polls_lock:
        conn = _polls.get(url)
        try:
            if conn is None or conn.closed:
                conn = _polls[url] = open_connection(url)
                conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT coalesce(max(seq), 0), count(*) FROM driftloop.alias_history")
                last, moves = cur.fetchone()
        except Exception:
            _polls.pop(url, None)
            if conn is not None:
                conn.close()
            raise
    return int(last), int(moves)


def _save(cur: Cursor, name: str, entry: dict[str, Any], history_before: int) -> None:
    history = entry.get("history", [])
    if len(history) < history_before:
        raise ValueError(f"alias history of {name!r} lost entries; history only grows")
    extra = {k: v for k, v in entry.items() if k not in _OWN_KEYS}
    champions = entry.get("champions")
    cur.execute(
        "UPDATE driftloop.models SET champions = %s, extra = %s WHERE name = %s",
        (None if champions is None else _json(champions), _json(extra), name),
    )
    cur.execute("DELETE FROM driftloop.aliases WHERE name = %s", (name,))
    for alias, tag in entry.get("aliases", {}).items():
        cur.execute(
            "INSERT INTO driftloop.aliases (name, alias, tag) VALUES (%s, %s, %s)",
            (name, alias, tag),
        )
    for move in history[history_before:]:
        cur.execute(
            "INSERT INTO driftloop.alias_history (name, entry) VALUES (%s, %s)",
            (name, _json(move)),
        )


@contextlib.contextmanager
def locked_entry(url: str, name: str) -> Iterator[dict[str, Any]]:
    """``name``'s entry for a read-modify-write under its row lock; written when the block
    ends cleanly, rolled back whole when it raises."""
    ensure_schema(url)
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO driftloop.models (name) VALUES (%s) ON CONFLICT DO NOTHING", (name,)
        )
        cur.execute("SELECT name FROM driftloop.models WHERE name = %s FOR UPDATE", (name,))
        entry = entries(cur, name)[name]
        before = len(entry["history"])
        yield entry
        _save(cur, name, entry, before)


def insert_index(cur: Cursor, index: dict[str, dict[str, Any]]) -> None:
    """Store a whole index in the cursor's transaction; refused unless no model is stored yet."""
    cur.execute("LOCK TABLE driftloop.models IN EXCLUSIVE MODE")
    cur.execute("SELECT exists (SELECT 1 FROM driftloop.models)")
    if cur.fetchone()[0]:
        raise ValueError("the alias index on PostgreSQL is not empty; not overwriting it")
    for name, entry in index.items():
        cur.execute("INSERT INTO driftloop.models (name) VALUES (%s)", (name,))
        _save(cur, name, entry, 0)
