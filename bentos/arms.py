"""Routing by arm inside the service: which records the challenger answers (sticky by the
entity id, the dataset's id column), each arm's records scored by its model, and the response
rows back in the request's order.

A challenger that fails is stood in for by the champion: the request still succeeds, and the
log keeps ``arm=challenger`` with the champion's tag, which the rollout counts as a challenger
error (a guardrail). Records without an id go to the champion.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from tasks.scoring import score_inputs

if TYPE_CHECKING:
    from tasks.predlog import ScoredBatch
    from tasks.registry import LoadedModel
    from tasks.rollout.routing import Router

log = logging.getLogger("driftloop.serving")
CHAMPION_ARM, CHALLENGER_ARM = "champion", "challenger"


def to_challenger(frame: pl.DataFrame, id_column: str | None, router: Router | None):
    """Boolean mask of the rows the challenger answers; ``None`` when none does."""
    if router is None or id_column is None or id_column not in frame.columns:
        return None
    ids = frame[id_column]
    if frame.height == 1:  # the common request: one hash, no arrays
        entity = ids[0]
        if entity is None or router.arm(entity) == CHAMPION_ARM:
            return None
        return np.ones(1, dtype=bool)
    known = ids.is_not_null().to_numpy()
    mask = np.zeros(frame.height, dtype=bool)
    mask[known] = router.to_challenger(ids.drop_nulls().cast(pl.String).to_list())
    return mask if mask.any() else None


@dataclass(frozen=True)
class Answer:
    """One arm's scored records and where they sit in the request (``None``: all of it)."""

    batch: ScoredBatch
    rows: np.ndarray | None


def _challenger(frame: pl.DataFrame, champion: LoadedModel, challenger: LoadedModel,
                id_column: str | None, started: float) -> ScoredBatch:  # fmt: skip
    try:
        batch = score_inputs(frame, challenger, id_column, started)
    except Exception:  # the champion stands in; the log shows it (a challenger error)
        log.exception("challenger %s failed; the champion answers", challenger.tag)
        batch = score_inputs(frame, champion, id_column, started)
    return replace(batch, arm=CHALLENGER_ARM)


def score_routed(
    frame: pl.DataFrame,
    champion: LoadedModel,
    challenger: LoadedModel | None,
    router: Router | None,
    id_column: str | None,
    started: float,
) -> list[Answer]:
    """Score the request: each record by the model of its arm."""
    mask = None if challenger is None else to_challenger(frame, id_column, router)
    if mask is None:
        return [Answer(score_inputs(frame, champion, id_column, started), None)]
    assert challenger is not None
    if mask.all():
        return [Answer(_challenger(frame, champion, challenger, id_column, started), None)]
    rest = ~mask
    before = time.perf_counter()
    first = score_inputs(frame.filter(rest), champion, id_column, started)
    # each arm's latency: the request's overhead plus its own scoring, not the other arm's
    own_start = started + (time.perf_counter() - before)
    second = _challenger(frame.filter(mask), champion, challenger, id_column, own_start)
    return [Answer(first, np.flatnonzero(rest)), Answer(second, np.flatnonzero(mask))]


def predictions(answers: list[Answer]) -> list[dict]:
    """The response's records, in the request's order, each naming its model and arm."""
    parts = [_rows(a.batch) for a in answers]
    if len(answers) == 1:
        return parts[0]
    out: list[dict] = [{}] * sum(len(p) for p in parts)
    for answer, part in zip(answers, parts, strict=True):
        for i, row in zip(answer.rows.tolist(), part, strict=True):
            out[i] = row
    return out


def _rows(batch: ScoredBatch) -> list[dict]:
    tag, arm = batch.model_tag, batch.arm
    ids = batch.entity_ids if batch.entity_ids is not None else [None] * len(batch)
    decisions = batch.decisions.tolist() if batch.decisions is not None else [None] * len(batch)
    return [
        {"request_id": r, "id": i, "score": s, "decision": d, "model_tag": tag, "arm": arm}
        for r, i, s, d in zip(batch.request_ids, ids, batch.scores.tolist(), decisions, strict=True)
    ]
