"""One micro-batch: validate records with the service's contract, score, log, dead-letter.

Pure of any broker: records come in as ``(key, raw bytes)``, results go out as bytes to
publish. The rows of a scored batch are appended to the prediction log; the caller flushes
it (fsynced) before it publishes and acknowledges (at least once).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson
import polars as pl
from pydantic import ValidationError

from bentos.arms import score_routed
from schemas.requests import RequestModels, frame_errors, rows_to_frame
from tasks.streaming.fastcheck import fast_check

if TYPE_CHECKING:
    from bentos.arms import Answer
    from bentos.runtime import ModelWatcher
    from tasks.buffered_log import BufferedLog


# the batch check has a fixed cost (building a frame, ~0.6 ms): per record, pydantic alone is
# as fast up to ~400 records; at 1,000 the check takes ~7.0 ms against ~7.9 (CPU, one core)
FAST_CHECK_MIN_RECORDS = 500


class NoModelError(RuntimeError):
    """No champion to score with yet: the batch is kept (not acknowledged) and retried."""


class Record(NamedTuple):  # a tuple: thousands are made per batch
    key: str  # stable across redeliveries: the broker's id of the record, or its key field
    body: bytes  # as received
    sent_at: float | None = None  # when the producer sent it (epoch seconds), if known


@dataclass(frozen=True)
class BatchOutcome:
    """What one batch produced: at most one results message and one dead letter per record."""

    results: bytes | None  # one message: {"model_tag", "results": [{"key", "id", ...}]}
    dead_letters: list[bytes]
    scored: dict[str, int]  # records scored, by the tag of the model that answered


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


def _with_key(record: Record, key_field: str | None, value: Any = None) -> Record:
    """The record keyed by its ``key_field`` value when it has one (else the broker's id);
    ``value``: the validated field's value, if the field is in the contract."""
    if key_field is None:
        return record
    if value is None:  # not a contract field, or the record failed validation: read the JSON
        try:
            obj = orjson.loads(record.body)
        except orjson.JSONDecodeError:
            return record
        value = obj.get(key_field) if isinstance(obj, dict) else None
    return record if value is None else record._replace(key=str(value))


@dataclass(frozen=True)
class Validated:
    records: list[Record]  # the valid ones, in order
    frame: pl.DataFrame | None  # their contract-typed rows
    dead_letters: list[bytes]


def validate(
    records: list[Record], models: RequestModels, key_field: str | None = None
) -> Validated:
    """Split records into valid rows and dead letters, with the service's request contract:
    the whole batch through the contract's batch check, then every record it did not accept
    through the request model (as the service validates a request body), which gives a dead
    letter its reasons."""
    fast = fast_check(models) if len(records) >= FAST_CHECK_MIN_RECORDS else None
    accepted = fast.accept([r.body for r in records]) if fast is not None else None
    rows: dict[int, dict] = {}  # index in the batch -> validated fields
    if accepted is not None:
        rows = dict(zip(accepted.rows, accepted.values, strict=True))
    dead: dict[int, bytes] = {}
    check = models.record.__pydantic_validator__.validate_json  # model_validate_json, unwrapped
    for i in (i for i in range(len(records)) if i not in rows):
        try:  # JSON mode, as the service validates a request body (bad JSON: json_invalid)
            rows[i] = check(records[i].body).__dict__
        except ValidationError as exc:
            errors = _json_safe(exc.errors(include_url=False))
            dead[i] = dead_letter(_with_key(records[i], key_field), errors)
    if not rows:
        return Validated([], None, [dead[i] for i in sorted(dead)])
    order = sorted(rows)
    if accepted is not None and accepted.frame is not None and len(order) == len(accepted.rows):
        frame = accepted.frame  # the common case: the batch check accepted every valid record
    else:
        frame = rows_to_frame([rows[i] for i in order], models)
    keyed = key_field in frame.columns
    keys = frame[key_field].to_list() if keyed else [None] * len(order)
    good = [_with_key(records[i], key_field, k) for i, k in zip(order, keys, strict=True)]
    by_row: dict[int, list[dict]] = defaultdict(list)
    for err in frame_errors(frame, models, loc="record"):
        by_row[err["loc"][1]].append({**err, "loc": [err["loc"][0], *err["loc"][2:]]})
    if by_row:  # the checks pydantic cannot express (dataframe-level rules)
        for j, errs in by_row.items():
            dead[order[j]] = dead_letter(good[j], errs)
        keep = [j for j in range(len(good)) if j not in by_row]
        good, frame = [good[j] for j in keep], frame[keep]
    return Validated(good, frame if good else None, [dead[i] for i in sorted(dead)])


def results_message(answers: list[Answer], keys: list[str]) -> bytes:
    """The published scores of one batch in the records' order, each carrying its record's
    key, and the model and rollout arm that answered it (as the HTTP service's rows do)."""
    results: list[dict] = [{}] * len(keys)
    for answer in answers:
        b = answer.batch
        rows = range(len(b)) if answer.rows is None else answer.rows.tolist()
        ids = b.entity_ids if b.entity_ids is not None else [None] * len(b)
        decisions = b.decisions.tolist() if b.decisions is not None else [None] * len(b)
        for r, i, s, d in zip(rows, ids, b.scores.tolist(), decisions, strict=True):
            results[r] = {"key": keys[r], "id": i, "score": s, "decision": d,
                          "model_tag": b.model_tag, "arm": b.arm}  # fmt: skip
    return orjson.dumps({"model_tag": answers[0].batch.model_tag, "results": results})


def score_records(
    records: list[Record],
    models: RequestModels,
    watcher: ModelWatcher,
    log: BufferedLog,
    key_field: str | None = None,
) -> BatchOutcome:
    """Validate and score one batch, each record by the model of its rollout arm (as the
    service routes); its log rows are buffered in ``log`` (the caller flushes them durably
    before publishing: see ``tasks.streaming.consumer``)."""
    started = time.perf_counter()
    checked = validate(records, models, key_field)
    if checked.frame is None:
        return BatchOutcome(None, checked.dead_letters, {})
    in_use = watcher.models  # one read: a swap mid-batch cannot mix models or splits
    if in_use.champion is None:
        raise NoModelError(f"no {models.dataset.name} champion model yet")
    id_column = models.dataset.id_column
    answers = score_routed(
        checked.frame, in_use.champion, in_use.challenger, in_use.router, id_column, started
    )
    keys = [r.key for r in checked.records]
    scored: dict[str, int] = {}
    for answer in answers:  # the log row joins its result by the record's key
        mine = keys if answer.rows is None else [keys[i] for i in answer.rows.tolist()]
        batch = replace(answer.batch, request_ids=mine)
        log.append((batch, in_use.challenger), len(batch), journal=False)  # flushed per batch
        scored[batch.model_tag] = scored.get(batch.model_tag, 0) + len(batch)
    return BatchOutcome(results_message(answers, keys), checked.dead_letters, scored)
