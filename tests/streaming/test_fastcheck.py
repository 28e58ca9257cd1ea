"""The batch check accepts only what the request model accepts, typed the same way, and
``validate`` gives the same rows and dead letters as validating every record with the model."""

from __future__ import annotations

import contextlib
import json
import random

import orjson
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from pydantic import ValidationError

from schemas import load_dataset
from schemas.requests import frame_errors, records_to_frame, request_models
from tasks.streaming.batch import Record, validate
from tasks.streaming.fastcheck import fast_check
from tests.support.models import tiny_models

SEED, MUTANTS = 20261201, 3_000
# values a producer might send in any field: wrong JSON types, bools for ints, floats for
# ints, bounds and their neighbours, unknown categories, lengths, patterns, huge numbers
ODD_VALUES = [None, True, False, 0, 1, -1, 2, 5, 0.0, 1.0, 5.0, 5.5, -0.01, 120, 121, 1000,
              1000.0001, 100_000, 100_001.5, 2**63 - 1, 2**64 - 1, 2**70, 1e-320, 1.7e308, "",
              "5", "Yes", "yes", "No", "Maybe", "Male", "DSL", "Two year", "a b", "ABC-123",
              "é" * 3, "x" * 33, "x" * 2_000, [], {}, [1], {"a": 1}]  # fmt: skip
RAW_BODIES = [
    b"{",
    b"null",
    b"[]",
    b"1",
    b'"x"',
    b"",
    b"\xef\xbb\xbf{}",
    b"\xff\xfe",
    b'{"tenure": NaN}',
    b'{"MonthlyCharges": Infinity}',
    b'{"MonthlyCharges": 1e400}',
]


@pytest.fixture(scope="module")
def models():
    return request_models(load_dataset("telco"))


def _mutants(bases: list[dict], n: int, seed: int) -> list[bytes]:
    """Valid records with 0-3 fields changed, dropped or added (seeded), and broken bodies."""
    rng = random.Random(seed)
    fields = list(bases[0])
    out = [orjson.dumps(b) for b in bases]
    for _ in range(n):
        rec = dict(rng.choice(bases))
        for _ in range(rng.randint(0, 3)):
            roll = rng.random()
            if roll < 0.1:
                rec.pop(rng.choice(fields), None)
            elif roll < 0.15:
                rec["not_a_field"] = rng.choice(ODD_VALUES)
            else:
                rec[rng.choice(fields)] = rng.choice(ODD_VALUES)
        dup = rng.random() < 0.02  # a repeated key: the last one counts, in both decoders
        body = json.dumps(rec, ensure_ascii=rng.random() < 0.5).encode()  # ints beyond 64 bits
        out.append(body[:-1] + b', "tenure": 3}' if dup else body)
    return out + RAW_BODIES


def _by_model(bodies: list[bytes], models) -> dict[int, object]:
    check = models.record.__pydantic_validator__.validate_json
    valid = {}
    for i, body in enumerate(bodies):
        with contextlib.suppress(ValidationError):
            valid[i] = check(body)
    return valid


def test_batch_check_accepts_exactly_the_valid_records_typed_as_the_model_types_them(
    models,
) -> None:
    bodies = _mutants(tiny_models().records, MUTANTS, SEED)
    valid = _by_model(bodies, models)
    accepted = fast_check(models).accept(bodies)
    assert set(accepted.rows) <= set(valid)  # never a record the contract refuses
    assert 0.2 < len(valid) / len(bodies) < 0.8  # the mutants exercise both sides
    assert accepted.rows == sorted(valid)  # and it leaves none of the valid ones to pydantic
    expected = records_to_frame([valid[i] for i in accepted.rows], models)
    assert accepted.frame is not None
    assert_frame_equal(accepted.frame, expected)


def _reference(records: list[Record], models) -> tuple[list[str], pl.DataFrame, dict]:
    """Every record through the request model, then the frame rules (the per-record way)."""
    valid = _by_model([r.body for r in records], models)
    dead = {records[i].key for i in range(len(records)) if i not in valid}
    order = sorted(valid)
    frame = records_to_frame([valid[i] for i in order], models)
    broken = {e["loc"][1] for e in frame_errors(frame, models, loc="record")}
    keep = [j for j in range(len(order)) if j not in broken]
    dead |= {records[order[j]].key for j in broken}
    return [records[order[j]].key for j in keep], frame[keep], dead


def test_a_clean_column_pass_never_hides_a_bad_record(models) -> None:
    """A batch of valid records and one mutant: the whole-column pass must send it to the
    per-row query whenever the mutant breaks a rule."""
    clean = [orjson.dumps(r) for r in tiny_models().records[:20]]
    mutants = _mutants(tiny_models().records, 400, SEED + 2)[len(tiny_models().records) :]
    check, refused = fast_check(models), 0
    for body in mutants:
        accepted = check.accept([*clean, body])
        valid = sorted(_by_model([*clean, body], models))
        assert accepted.rows == valid
        refused += len(valid) == len(clean)
    assert refused > 100  # most single mutants break a rule


def test_validate_matches_validating_every_record_with_the_model(models) -> None:
    bodies = _mutants(tiny_models().records, 600, SEED + 1)
    records = [Record(f"k{i}", body) for i, body in enumerate(bodies)]
    keys, frame, dead = _reference(records, models)
    out = validate(records, models)
    assert [r.key for r in out.records] == keys
    assert out.frame is not None
    assert_frame_equal(out.frame, frame)
    letters = [orjson.loads(d) for d in out.dead_letters]
    assert {d["key"] for d in letters} == dead and len(letters) == len(dead)
    assert all(d["errors"] for d in letters)  # every dead letter says why


def test_dead_letter_reasons_are_the_models_own(models) -> None:
    good = tiny_models().records[0]
    body = orjson.dumps({**good, "tenure": True, "MonthlyCharges": "5", "gender": "x"})
    (letter,) = validate([Record("k", body)], models).dead_letters
    check = models.record.__pydantic_validator__.validate_json
    with pytest.raises(ValidationError) as exc:
        check(body)
    expected = [{"type": e["type"], "loc": list(e["loc"]), "msg": e["msg"]}
                for e in exc.value.errors(include_url=False)]  # fmt: skip
    assert orjson.loads(letter)["errors"] == expected
