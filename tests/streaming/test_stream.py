"""``driftloop stream`` against the real brokers on this machine (Redis, NATS, RabbitMQ)."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from tasks import registry
from tasks.predlog import load_predictions
from tests.streaming.streamkit import (
    BrokerKit,
    Collected,
    ThreadConsumer,
    champion_home,
    stream_config,
)
from tests.support.models import scores_in_process

SCHEMES = ["redis", "nats", "amqp"]


def _bad_records(good: dict) -> dict[str, bytes]:
    """One record of each kind the consumer must dead-letter (and keep going)."""
    return {
        "malformed": b'{"customerID": "x", "tenure": ',
        "wrong_type": orjson.dumps({**good, "tenure": "twelve"}),
        "unknown_category": orjson.dumps({**good, "Contract": "Forever"}),
        "breaks_frame_rule": orjson.dumps({**good, "tenure": 20, "TotalCharges": None}),
        "not_an_object": b"[1, 2, 3]",
    }


@pytest.mark.timeout(180)
@pytest.mark.parametrize("scheme", SCHEMES)
def test_scores_match_in_process_and_bad_records_dead_letter(scheme: str) -> None:
    home = champion_home(f"stream-{scheme}")
    tiny = home.tiny
    config = stream_config(scheme, batch_size=64, batch_ms=20)
    kit = BrokerKit(config)
    records = tiny.records[:300]
    bad = _bad_records(records[0])
    # bad records in the middle: the ones after them must still be scored
    bodies = [orjson.dumps(r) for r in records[:150]] + list(bad.values())
    bodies += [orjson.dumps(r) for r in records[150:]]
    try:
        with ThreadConsumer(config, home.settings):
            keys = kit.produce(bodies)
            got = Collected(kit).wait_for(keys, timeout=60)
        bad_keys = dict(zip(bad, keys[150 : 150 + len(bad)], strict=True))
        good_keys = keys[:150] + keys[150 + len(bad) :]
        by_key = {r["key"]: r for r in got.results}
        assert set(by_key) == set(good_keys)
        expected = scores_in_process(tiny.a, tiny.features, tiny.rows[:300])
        scores = np.array([by_key[k]["score"] for k in good_keys])
        np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-9)
        assert {r["model_tag"] for r in got.results} == {home.tags["a"]}
        assert [by_key[k]["id"] for k in good_keys] == [r["customerID"] for r in records]

        dead = {d["key"]: d for d in got.dead}
        assert set(dead) == set(bad_keys.values())
        for kind, key in bad_keys.items():
            assert dead[key]["errors"], kind
            assert dead[key]["body"] == bad[kind].decode()
        types = {kind: {e["type"] for e in dead[key]["errors"]} for kind, key in bad_keys.items()}
        assert types["malformed"] == {"json_invalid"}
        assert "int_type" in types["wrong_type"]
        assert types["breaks_frame_rule"] == {"total_charges_missing_only_when_new"}

        logged = load_predictions(settings=home.settings)
        assert set(logged["request_id"]) == set(good_keys)
        np.testing.assert_allclose(
            logged.sort("customerID")["score"].to_numpy(),
            np.array([by_key[k]["score"] for k in good_keys])[
                np.argsort([r["customerID"] for r in records])
            ],
            atol=1e-12,
        )
    finally:
        kit.cleanup()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("scheme", SCHEMES)
def test_promotion_is_picked_up_mid_stream(scheme: str) -> None:
    home = champion_home(f"stream-promote-{scheme}")
    tiny = home.tiny
    config = stream_config(scheme, batch_size=32, batch_ms=10)
    kit = BrokerKit(config)
    first, second = tiny.records[:100], tiny.records[100:200]
    try:
        with ThreadConsumer(config, home.settings) as running:
            collected = Collected(kit)
            keys1 = kit.produce([orjson.dumps(r) for r in first])
            collected.wait_for(keys1, timeout=60)
            registry.set_alias("telco", registry.CHAMPION, home.tags["b"], settings=home.settings)
            watcher = running.consumer.watcher
            for _ in range(200):  # the watcher polls the index every half second
                if watcher.models.champion.tag == home.tags["b"]:
                    break
                __import__("time").sleep(0.1)
            keys2 = kit.produce([orjson.dumps(r) for r in second])
            got = collected.wait_for(keys2, timeout=60)
        by_key = {r["key"]: r for r in got.results}
        assert {by_key[k]["model_tag"] for k in keys1} == {home.tags["a"]}
        assert {by_key[k]["model_tag"] for k in keys2} == {home.tags["b"]}
        expected = scores_in_process(tiny.b, tiny.features, tiny.rows[100:200])
        np.testing.assert_allclose([by_key[k]["score"] for k in keys2], expected, atol=1e-9)
    finally:
        kit.cleanup()
