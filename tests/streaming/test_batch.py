"""The broker-free parts: validation into rows and dead letters, config, throughput window."""

from __future__ import annotations

import orjson
import pytest
from pydantic import ValidationError

from schemas import load_dataset
from schemas.requests import request_models
from tasks.streaming.batch import Record, validate
from tasks.streaming.config import StreamConfig
from tasks.streaming.metrics import Throughput
from tests.support.models import tiny_models


@pytest.fixture(scope="module")
def models():
    return request_models(load_dataset("telco"))


def test_validate_splits_rows_and_dead_letters_with_every_reason(models) -> None:
    good = tiny_models().records[:3]
    two_wrong = {**good[0], "tenure": "x", "Contract": "Forever"}
    frame_rule = {**good[1], "tenure": 5, "TotalCharges": None}
    records = [Record("k0", orjson.dumps(good[0])), Record("k1", b"{"),
               Record("k2", orjson.dumps(two_wrong)), Record("k3", orjson.dumps(frame_rule)),
               Record("k4", orjson.dumps(good[2]))]  # fmt: skip
    out = validate(records, models)
    assert [r.key for r in out.records] == ["k0", "k4"]
    assert out.frame is not None and out.frame["customerID"].to_list() == [
        good[0]["customerID"], good[2]["customerID"]]  # fmt: skip
    dead = {d["key"]: d for d in map(orjson.loads, out.dead_letters)}
    assert set(dead) == {"k1", "k2", "k3"}
    assert {e["loc"][-1] for e in dead["k2"]["errors"]} == {"tenure", "Contract"}  # both reasons
    assert dead["k3"]["errors"][0]["type"] == "total_charges_missing_only_when_new"
    assert dead["k1"]["body"] == "{"


def test_key_field_replaces_the_broker_id(models) -> None:
    rec = tiny_models().records[0]
    out = validate([Record("1-0", orjson.dumps(rec))], models, key_field="customerID")
    assert out.records[0].key == rec["customerID"]


def test_all_invalid_gives_no_frame(models) -> None:
    out = validate([Record("a", b"null"), Record("b", b"[]")], models)
    assert out.frame is None and len(out.dead_letters) == 2


def test_config_picks_broker_by_scheme_and_refuses_unknown() -> None:
    cfg = StreamConfig(broker="amqps://h/", input="in", output="out")
    assert cfg.scheme == "amqp" and cfg.dead_letter_name == "in.dead-letter"
    with pytest.raises(ValidationError, match="unsupported broker URL scheme"):
        StreamConfig(broker="http://h", input="in", output="out")


def test_throughput_is_a_sliding_window() -> None:
    t = Throughput(window=10)
    assert t.add(100, now=0.0) == 10.0
    assert t.add(100, now=5.0) == 20.0
    assert t.add(0, now=12.0) == 10.0  # the first 100 left the window


def test_redis_body_reads_faststream_formats_and_takes_plain_json_as_is() -> None:
    import asyncio

    from faststream.redis.parser.binary import BinaryMessageFormatV1

    from tasks.streaming.brokers import _redis_body

    plain = orjson.dumps({"customerID": "1", "tenure": 3})
    assert _redis_body(plain) is plain  # not decoded at all
    binary = asyncio.run(BinaryMessageFormatV1.encode(
        message=plain, reply_to=None, headers={"h": "1"}, correlation_id="c"))  # fmt: skip
    envelope = orjson.dumps({"data": plain.decode(), "headers": {}})
    escaped = b'{"d\\u0061ta": ' + orjson.dumps(plain.decode()) + b', "headers": {}}'
    for payload in (binary, envelope, escaped):  # as FastStream's own parser reads them
        assert _redis_body(payload) == BinaryMessageFormatV1.parse(payload)[0] == plain


def test_redis_bodies_of_a_batch_are_each_payloads_body() -> None:
    import asyncio

    from faststream.redis.parser.binary import BinaryMessageFormatV1

    from tasks.streaming.brokers import _ENVELOPE_MARKS, _redis_bodies

    assert _ENVELOPE_MARKS[0] == BinaryMessageFormatV1.IDENTITY_HEADER
    plain = [orjson.dumps({"customerID": str(i), "tenure": i}) for i in range(3)]
    assert all(a is b for a, b in zip(_redis_bodies(plain), plain, strict=True))  # as they are
    binary = asyncio.run(BinaryMessageFormatV1.encode(
        message=plain[1], reply_to=None, headers={}, correlation_id="c"))  # fmt: skip
    envelope = orjson.dumps({"data": plain[2].decode(), "headers": {}})
    for mixed in ([plain[0], binary, plain[2]], [plain[0], plain[1], envelope]):
        assert _redis_bodies(mixed) == plain  # one envelope in the batch: each looked at
