"""Move a home's embedded state to PostgreSQL: the Parquet prediction and feedback logs and
the file alias index, in one transaction, checked row for row before it commits.

The target must be empty (nothing is merged or overwritten); the files stay where they were,
so going back is unsetting ``DRIFTLOOP_DATABASE_URL``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import polars as pl

from tasks.postgres import aliases
from tasks.postgres.db import connect, ensure_schema
from tasks.postgres.log import copy_in, fit_columns, read_table
from tasks.predlog import LogKind, log_files
from tasks.settings import Settings


class TransferError(RuntimeError):
    """The target is not empty, or what was written does not read back as the source."""


@dataclass(frozen=True)
class Transfer:
    """What moved: rows per log, models and alias moves of the index."""

    url: str
    predictions: int
    feedback: int
    models: int
    history: int


def _copy_log(conn, kind: LogKind, settings: Settings) -> int:
    folder = settings.predictions_dir if kind == "predictions" else settings.feedback_dir
    with conn.cursor() as cur:
        cur.execute(f"SELECT exists (SELECT 1 FROM driftloop.{kind})")
        if cur.fetchone()[0]:
            raise TransferError(f"driftloop.{kind} already holds rows; migrate into an empty one")
    rows, columns = 0, None
    for path in log_files(folder):  # file by file: memory stays one file's worth
        frame = pl.read_parquet(path)
        columns = fit_columns(conn, kind, frame, columns)
        copy_in(conn, kind, frame, columns)
        rows += frame.height
    return rows


def _same(moved: pl.DataFrame, source: pl.DataFrame) -> bool:
    """Equal rows and values, in the reader's order (types as PostgreSQL keeps them)."""
    if set(moved.columns) != set(source.columns) or moved.height != source.height:
        return False
    return moved.select(source.columns).equals(source.cast(moved.select(source.columns).schema))


def transfer_home(settings: Settings, url: str) -> Transfer:
    """Copy ``settings``' Parquet logs and alias index into the database at ``url``."""
    from tasks.predlog import load_feedback, load_predictions
    from tasks.registry import read_index

    files = settings.model_copy(update={"database_url": None})
    index = read_index(files)
    ensure_schema(url)
    with connect(url) as conn:  # one transaction: all of it, or nothing
        counts = {kind: _copy_log(conn, kind, files) for kind in ("predictions", "feedback")}
        for kind, load in (("predictions", load_predictions), ("feedback", load_feedback)):
            if not _same(read_table(conn, kind), load(settings=files)):
                raise TransferError(f"{kind}: the rows in PostgreSQL differ from the files")
        with conn.cursor() as cur:
            aliases.insert_index(cur, index)
            moved = aliases.entries(cur)
        if json.loads(json.dumps(moved)) != json.loads(json.dumps(index)):
            raise TransferError("alias index: PostgreSQL differs from models/index.json")
    history = sum(len(e.get("history", [])) for e in index.values())
    return Transfer(url, counts["predictions"], counts["feedback"], len(index), history)
