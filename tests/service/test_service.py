"""One real `bentoml serve` on loopback: scores, bad input, metrics, feedback, shadow, hot swap
under load, and a SIGTERM stop after which the log holds every answered request."""

from __future__ import annotations

import json
import math
import signal
import threading
import time

import httpx
import numpy as np
import polars as pl
import pytest

from tasks import registry
from tasks.predlog import join_feedback, load_feedback, load_predictions
from tests.support.models import scores_in_process
from tests.support.server import ADMIN_TOKEN, Server, predict

pytestmark = pytest.mark.e2e

ANSWERS: dict[str, dict] = {}  # request_id -> what the client was told
SHADOWED: set[str] = set()
FEEDBACK: dict[str, object] = {}


def _ok(resp) -> dict:
    assert resp.status_code == 200, resp.text
    body = resp.json()
    preds = body["predictions"] if isinstance(body, dict) else body
    ANSWERS.update({p["request_id"]: p for p in preds})
    return body


def test_served_scores_equal_in_process_booster(served, tiny_models):
    server, tags = served
    rows = tiny_models.rows
    expected = scores_in_process(tiny_models.a, tiny_models.features, rows)
    body = _ok(predict(server, tiny_models.records))
    got = np.array([p["score"] for p in body["predictions"]])
    assert body["model_tag"] == tags["a"]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    assert [p["id"] for p in body["predictions"]] == rows["customerID"].to_list()
    assert all(p["decision"] == (p["score"] >= 0.4) for p in body["predictions"])
    assert len({p["request_id"] for p in body["predictions"]}) == rows.height
    single = _ok(predict(server, tiny_models.records[:1]))["predictions"][0]
    assert abs(single["score"] - expected[0]) <= 1e-9


def test_predict_batch_matches_and_merges_concurrent_calls(served, tiny_models):
    from concurrent.futures import ThreadPoolExecutor

    server, tags = served
    expected = scores_in_process(tiny_models.a, tiny_models.features, tiny_models.rows)
    chunks = [tiny_models.records[i : i + 100] for i in range(0, 400, 100)]
    with ThreadPoolExecutor(4) as pool:
        resps = list(
            pool.map(lambda c: server.client.post("/predict_batch", json={"records": c}), chunks)
        )
    got = np.concatenate([[p["score"] for p in _ok(r)] for r in resps])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    assert {p["model_tag"] for r in resps for p in r.json()} == {tags["a"]}


def _bad_corpus(r: dict) -> list[tuple[str, object, int, str]]:
    """(name, body, expected status, text the error must contain)."""
    missing = {k: v for k, v in r.items() if k != "tenure"}
    return [
        ("missing field", {"records": [missing]}, 400, "tenure"),
        ("wrong type", {"records": [{**r, "tenure": "twelve"}]}, 400, "valid integer"),
        ("string number", {"records": [{**r, "MonthlyCharges": "29.85"}]}, 400, "MonthlyCharges"),
        ("bool for int", {"records": [{**r, "SeniorCitizen": True}]}, 400, "SeniorCitizen"),
        ("unknown category", {"records": [{**r, "Contract": "Weekly"}]}, 400, "Month-to-month"),
        ("out of range", {"records": [{**r, "tenure": -1}]}, 400, "greater than or equal to 0"),
        ("pattern", {"records": [{**r, "customerID": "bad id!"}]}, 400, "customerID"),
        ("unknown column", {"records": [{**r, "Churn": "Yes"}]}, 400, "Extra inputs"),
        ("null not allowed", {"records": [{**r, "gender": None}]}, 400, "gender"),
        ("contract rule", {"records": [{**r, "tenure": 5, "TotalCharges": None}]}, 400,
         "total_charges_missing_only_when_new"),
        ("empty list", {"records": []}, 400, "at least 1"),
        ("batch above limit", {"records": [r] * 1001}, 400, "at most 1000"),
        ("not a list", {"records": r}, 400, "valid array"),
        ("no records key", {"rows": [r]}, 400, "records"),
        ("10 MB string", {"records": [{**r, "customerID": "x" * 10_000_000}]}, 413,
         "larger than"),
    ]  # fmt: skip


def test_bad_request_corpus_gets_precise_4xx(served, tiny_models):
    server, _ = served
    record = tiny_models.records[0]
    for name, body, status, text in _bad_corpus(record):
        resp = server.client.post("/predict", json=body)
        assert resp.status_code == status, (name, resp.status_code, resp.text[:300])
        assert text in resp.text, (name, resp.text[:300])
    raw_cases = [
        ("malformed JSON", b'{"records": [{"gender": "Fe', "application/json", 400, "json_invalid"),
        ("NaN", json.dumps({"records": [{**record, "MonthlyCharges": math.nan}]}).encode(),
         "application/json", 400, "finite number"),
        ("inf", json.dumps({"records": [{**record, "TotalCharges": math.inf}]}).encode(),
         "application/json", 400, "finite number"),
        ("multipart, no boundary", b"x", "multipart/form-data", 415, "application/json"),
        ("text", b"hello", "text/plain", 415, "application/json"),
        ("empty body", b"", "application/json", 400, "records"),
    ]  # fmt: skip
    for name, content, ctype, status, text in raw_cases:
        for route in ("/predict", "/predict_batch"):
            resp = server.client.post(route, content=content, headers={"content-type": ctype})
            assert resp.status_code == status, (name, route, resp.status_code, resp.text[:300])
            assert text in resp.text, (name, route, resp.text[:300])
    # a 10 MB body of any shape is refused before parsing, on every API route
    for route in ("/predict_batch", "/feedback"):
        resp = server.client.post(route, content=b'"' + b"x" * 10_000_000 + b'"',
                                  headers={"content-type": "application/json"})  # fmt: skip
        assert resp.status_code == 413, (route, resp.text[:200])
    assert server.client.get("/readyz").status_code == 200  # still alive


def test_feedback_is_validated_and_accepted(served, tiny_models):
    server, _ = served
    body = _ok(predict(server, tiny_models.records[:3]))
    rid = body["predictions"][0]["request_id"]
    entity = body["predictions"][1]["id"]
    ok = server.client.post(
        "/feedback",
        json={"feedback": [{"request_id": rid, "label": 1}, {"entity_id": entity, "label": "No"}]},
    )
    assert ok.status_code == 200 and ok.json() == {"accepted": 2}, ok.text
    for bad, text in [
        ({"label": 1}, "request_id or an entity_id"),
        ({"request_id": rid, "label": 0.5}, "must be 0 or 1"),
        ({"request_id": rid, "label": "Maybe"}, "unknown label"),
        ({"request_id": rid}, "label"),
    ]:
        resp = server.client.post("/feedback", json={"feedback": [bad]})
        assert resp.status_code == 400 and text in resp.text, (bad, resp.text[:300])
    FEEDBACK.update(request_id=rid, entity=entity)


def test_metrics_show_driftloop_metrics(served, tiny_models):
    server, tags = served
    _ok(predict(server, tiny_models.records[:5]))
    server.client.post("/predict", json={"records": [{**tiny_models.records[0], "tenure": -3}]})
    time.sleep(1.5)  # scores reach the histogram when the log flushes (every 0.5 s here)
    text = server.client.get("/metrics").text
    tag = tags["a"]
    assert f'driftloop_predictions_total{{model_tag="{tag}"}}' in text
    assert f'driftloop_prediction_score_bucket{{le="+Inf",model_tag="{tag}"}}' in text
    assert 'driftloop_validation_failures_total{field="tenure",rule="greater_than_equal"}' in text
    assert 'driftloop_feedback_total{key="request_id"}' in text
    assert 'driftloop_model_swaps_total{alias="champion",outcome="loaded"}' in text
    count = [ln for ln in text.splitlines() if ln.startswith("driftloop_prediction_score_count")]
    assert count and float(count[0].split()[-1]) > 0


def test_admin_reload_requires_the_token(served):
    server, tags = served
    assert server.client.post("/admin/reload", json={}).status_code == 401
    wrong = {"authorization": "Bearer nope"}
    assert server.client.post("/admin/reload", json={}, headers=wrong).status_code == 401
    good = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    resp = server.client.post("/admin/reload", json={}, headers=good)
    assert resp.status_code == 200 and resp.json()["champion"] == tags["a"]


def _wait_models(server: Server, **expected: str | None) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        got = server.client.post("/models", json={}).json()
        if all(got[k] == v for k, v in expected.items()):
            return
        time.sleep(0.1)
    raise AssertionError(f"models never became {expected}: {got}")


def _remember(body: dict, records: list[dict]) -> None:
    for p, rec in zip(body["predictions"], records, strict=True):
        ANSWERS[p["request_id"]] = {**p, "row": rec}


def test_shadow_challenger_is_logged_but_never_returned(served, tiny_models):
    server, tags = served
    settings = server.settings
    registry.set_alias("telco", registry.CHALLENGER, tags["b"], settings=settings)
    _wait_models(server, champion=tags["a"], challenger=tags["b"])
    expected = scores_in_process(tiny_models.a, tiny_models.features, tiny_models.rows)
    for i in range(0, 60, 3):
        records = tiny_models.records[i : i + 3]
        resp = server.client.post("/predict", json={"records": records})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert {p["model_tag"] for p in body["predictions"]} == {tags["a"]}
        got = [p["score"] for p in body["predictions"]]
        np.testing.assert_allclose(got, expected[i : i + 3], rtol=0, atol=1e-9)
        _remember(body, records)
        SHADOWED.update(p["request_id"] for p in body["predictions"])


def test_hot_swap_under_load_fails_nothing(served, tiny_models):
    server, tags = served
    settings = server.settings
    results: list[tuple[int, str | None, str | None, int]] = []
    stop = threading.Event()
    lock = threading.Lock()

    def client(offset: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            i = offset
            while not stop.is_set():
                rec = tiny_models.records[i % len(tiny_models.records)]
                try:
                    resp = c.post("/predict", json={"records": [rec]})
                    body = resp.json() if resp.status_code == 200 else None
                except httpx.HTTPError as exc:
                    with lock:
                        results.append((0, None, repr(exc), i))
                    continue
                with lock:
                    if body is None:
                        results.append((resp.status_code, None, resp.text[:200], i))
                    else:
                        p = body["predictions"][0]
                        results.append((200, p["model_tag"], p["request_id"], i))
                        ANSWERS[p["request_id"]] = {**p, "row": rec}
                i += 2

    threads = [threading.Thread(target=client, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.5)
        registry.promote("telco", tags["b"], reason="test", settings=settings)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until B has answered for a while
            with lock:
                b_count = sum(1 for r in results if r[1] == tags["b"])
            if b_count >= 50:
                break
            time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    failures = [r for r in results if r[0] != 200]
    assert not failures, failures[:5]
    served_tags = [r[1] for r in results]
    assert served_tags[0] == tags["a"] and served_tags[-1] == tags["b"]
    first_b = served_tags.index(tags["b"])
    assert all(t == tags["b"] for t in served_tags[first_b + 4 :])  # at most in-flight stragglers
    rows = pl.DataFrame([ANSWERS[r[2]]["row"] for r in results[-20:]])
    expected_b = scores_in_process(tiny_models.b, tiny_models.features, rows)
    got = [ANSWERS[r[2]]["score"] for r in results[-20:]]
    np.testing.assert_allclose(got, expected_b, rtol=0, atol=1e-9)
    metrics = server.client.get("/metrics").text
    assert 'driftloop_model_swaps_total{alias="champion",outcome="loaded"} 2.0' in metrics


def test_sigterm_stop_keeps_every_request_with_shadow_scores(served, tiny_models):
    """Last in this module: SIGTERM, then the log holds every answer, shadows beside them."""
    server, tags = served
    settings = server.settings
    assert ANSWERS and SHADOWED
    for i in range(20):  # still buffered in memory when the signal arrives
        _ok(predict(server, tiny_models.records[i : i + 1 + i % 3]))
    server.stop(signal.SIGTERM)
    logged = load_predictions(settings=settings)
    assert set(ANSWERS) <= set(logged["request_id"].to_list())
    assert logged["request_id"].n_unique() == logged.height
    by_id = logged.filter(pl.col("request_id").is_in(list(ANSWERS)))
    told = pl.DataFrame(
        {
            "request_id": list(ANSWERS),
            "told_score": [a["score"] for a in ANSWERS.values()],
            "told_tag": [a["model_tag"] for a in ANSWERS.values()],
        }
    )
    check = by_id.join(told, on="request_id")
    assert (check["model_tag"] == check["told_tag"]).all()
    assert (check["score"] - check["told_score"]).abs().max() <= 1e-12
    shadow = logged.filter(pl.col("request_id").is_in(list(SHADOWED)))
    assert shadow.height == len(SHADOWED)
    assert shadow["shadow_tag"].unique().to_list() == [tags["b"]]
    expected_b = scores_in_process(tiny_models.b, tiny_models.features, shadow)
    np.testing.assert_allclose(shadow["shadow_score"].to_numpy(), expected_b, rtol=0, atol=1e-9)
    after = logged.filter(pl.col("model_tag") == tags["b"])
    assert after.height > 0 and after["shadow_score"].null_count() == after.height
    assert logged["ts"].dtype == pl.Datetime("us", "UTC")
    assert logged.columns[:9] == [
        "request_id", "entity_id", "ts", "model_tag", "score", "decision",
        "shadow_tag", "shadow_score", "latency_ms",
    ]  # fmt: skip
    assert logged.schema["tenure"] == pl.Int64 and logged.schema["gender"] == pl.String
    feedback = load_feedback(settings=settings)
    assert feedback.height == 2
    joined = join_feedback(logged, feedback)
    by_request = joined.filter(pl.col("request_id") == FEEDBACK["request_id"])
    assert by_request["label"].to_list() == [1.0]
    by_entity = joined.filter(pl.col("entity_id") == FEEDBACK["entity"])
    assert by_entity.height >= 1 and set(by_entity["label"]) == {0.0}
