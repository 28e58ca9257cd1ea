"""One micro-batch: validate records with the service's contract, score, log, dead-letter.

Pure of any broker: records come in as ``(key, raw bytes)``, results go out as bytes to
publish. The rows of a scored batch are written to the prediction log and fsynced before
this returns (the caller publishes and acknowledges only afterwards: at least once).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import orjson
import polars as pl
from pydantic import ValidationError

from schemas.requests import RequestModels, frame_errors, records_to_frame
from tasks.scoring import score_inputs

if TYPE_CHECKING:
    from bentos.runtime import ModelWatcher
    from tasks.predlog import BufferedLog, ScoredBatch


class NoModelError(RuntimeError):
    """No champion to score with yet: the batch is kept (not acknowledged) and retried."""


@dataclass(frozen=True)
class Record:
    key: str  # stable across redeliveries: the broker's id of the record, or its key field
    body: bytes  # as received
    sent_at: float | None = None  # when the producer sent it (epoch seconds), if known


@dataclass(frozen=True)
class BatchOutcome:
    """What one batch produced: at most one results message and one dead letter per record."""

    results: bytes | None  # one message: {"model_tag", "results": [{"key", "id", ...}]}
    dead_letters: list[bytes]
    scored: int
    model_tag: str | None


def _json_safe(errors: list) -> list[dict]:
    return [{"type": e["type"], "loc": list(e["loc"]), "msg": e["msg"]} for e in errors]


def dead_letter(record: Record, errors: list[dict]) -> bytes:
    """A rejected record with every reason, and the raw body as received."""
    return orjson.dumps(
        {
            "key": record.key,
            "errors": errors,
            "body": record.body.decode("utf-8", errors="replace"),
            "ts": datetime.now(UTC).isoformat(),
        }
    )


def _with_key(record: Record, key_field: str | None, model: object | None = None) -> Record:
    """The record keyed by its ``key_field`` value when it has one (else the broker's id)."""
    if key_field is None:
        return record
    value = getattr(model, key_field, None)
    if value is None:  # not a contract field, or the record failed validation: read the JSON
        try:
            obj = orjson.loads(record.body)
        except orjson.JSONDecodeError:
            return record
        value = obj.get(key_field) if isinstance(obj, dict) else None
    return record if value is None else replace(record, key=str(value))


@dataclass(frozen=True)
class Validated:
    records: list[Record]  # the valid ones, in order
    frame: pl.DataFrame | None  # their contract-typed rows
    dead_letters: list[bytes]


def validate(
    records: list[Record], models: RequestModels, key_field: str | None = None
) -> Validated:
    """Split records into valid rows and dead letters, with the service's request contract."""
    good: list[Record] = []
    parsed = []
    dead: list[bytes] = []
    for record in records:
        try:  # JSON mode, as the service validates a request body (bad JSON: json_invalid)
            model = models.record.model_validate_json(record.body)
        except ValidationError as exc:
            errors = _json_safe(exc.errors(include_url=False))
            dead.append(dead_letter(_with_key(record, key_field), errors))
            continue
        parsed.append(model)
        good.append(_with_key(record, key_field, model))
    if not good:
        return Validated(good, None, dead)
    frame = records_to_frame(parsed, models)
    by_row: dict[int, list[dict]] = defaultdict(list)
    for err in frame_errors(frame, models, loc="record"):
        by_row[err["loc"][1]].append({**err, "loc": [err["loc"][0], *err["loc"][2:]]})
    if by_row:  # the checks pydantic cannot express (dataframe-level rules)
        dead += [dead_letter(good[i], errs) for i, errs in sorted(by_row.items())]
        keep = [i for i in range(len(good)) if i not in by_row]
        good, frame = [good[i] for i in keep], frame[keep]
    return Validated(good, frame if good else None, dead)


def results_message(batch: ScoredBatch) -> bytes:
    """The published scores of one batch, each carrying its record's key."""
    ids = batch.entity_ids if batch.entity_ids is not None else [None] * len(batch)
    decisions = batch.decisions.tolist() if batch.decisions is not None else [None] * len(batch)
    results = [
        {"key": k, "id": i, "score": s, "decision": d}
        for k, i, s, d in zip(batch.request_ids, ids, batch.scores.tolist(), decisions, strict=True)
    ]
    return orjson.dumps({"model_tag": batch.model_tag, "results": results})


def score_records(
    records: list[Record],
    models: RequestModels,
    watcher: ModelWatcher,
    log: BufferedLog,
    key_field: str | None = None,
) -> BatchOutcome:
    """Validate and score one batch; its log rows are durable on disk when this returns."""
    started = time.perf_counter()
    checked = validate(records, models, key_field)
    if checked.frame is None:
        return BatchOutcome(None, checked.dead_letters, 0, None)
    in_use = watcher.models  # one read: a swap mid-batch cannot mix models
    if in_use.champion is None:
        raise NoModelError(f"no {models.dataset.name} champion model yet")
    batch = score_inputs(checked.frame, in_use.champion, models.dataset.id_column, started)
    batch = replace(
        batch, request_ids=[r.key for r in checked.records]
    )  # the log row joins its result
    log.append((batch, in_use.challenger), len(batch))
    log.flush()  # temp file + fsync + rename: durable before anything is published
    return BatchOutcome(results_message(batch), checked.dead_letters, len(batch), batch.model_tag)
