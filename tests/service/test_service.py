"""Against a real `bentoml serve` on loopback: scores, bad input, metrics, feedback, clean stop."""

from __future__ import annotations

import json
import math
import signal
import time

import numpy as np
import polars as pl
import pytest
from servekit import ADMIN_TOKEN, predict, scores_in_process

from tasks.predlog import join_feedback, load_feedback, load_predictions
from tasks.settings import Settings

pytestmark = pytest.mark.e2e

SENT: set[str] = set()  # request ids the server answered in this module


def _ok(resp) -> dict:
    assert resp.status_code == 200, resp.text
    body = resp.json()
    preds = body["predictions"] if isinstance(body, dict) else body
    SENT.update(p["request_id"] for p in preds)
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
    SENT.add("feedback:" + rid)


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


def test_clean_stop_sigint_keeps_every_request(served, tiny_models):
    """Last in this module: stop the server, then every answered request is in the log."""
    server, tags = served
    for i in range(20):  # still buffered when the signal arrives
        _ok(predict(server, tiny_models.records[i : i + 1 + i % 3]))
    assert server.stop(signal.SIGINT) is not None
    settings = Settings(home=server.home)
    logged = load_predictions(settings=settings)
    ids = {r for r in SENT if not r.startswith("feedback:")}
    assert ids <= set(logged["request_id"].to_list())
    assert logged["request_id"].n_unique() == logged.height  # nothing written twice
    assert logged["model_tag"].unique().to_list() == [tags["a"]]
    assert logged["ts"].dtype == pl.Datetime("us", "UTC")
    assert logged.columns[:9] == [
        "request_id", "entity_id", "ts", "model_tag", "score", "decision",
        "shadow_tag", "shadow_score", "latency_ms",
    ]  # fmt: skip
    assert logged.schema["tenure"] == pl.Int64 and logged.schema["gender"] == pl.String
    feedback = load_feedback(settings=settings)
    assert feedback.height == 2
    joined = join_feedback(logged, feedback)
    rid = next(r for r in SENT if r.startswith("feedback:")).removeprefix("feedback:")
    assert joined.filter(pl.col("request_id") == rid)["label"].to_list() == [1.0]
    assert joined.filter(pl.col("label") == 0.0).height >= 1  # the entity-keyed label
