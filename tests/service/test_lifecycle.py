"""Shadow challenger, hot swap under load and a SIGTERM stop, on one real `bentoml serve`."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import numpy as np
import polars as pl
import pytest
from servekit import Server, free_port, make_home, save, scores_in_process

from tasks import registry
from tasks.predlog import load_predictions
from tasks.settings import Settings

pytestmark = pytest.mark.e2e

ANSWERS: dict[str, dict] = {}  # request_id -> what the client was told
SHADOWED: set[str] = set()


@pytest.fixture(scope="module")
def swap_server(tiny_models):
    home = make_home("swap")
    settings = Settings(home=home)
    settings.ensure_dirs()
    tags = {
        "a": save(tiny_models.a, tiny_models.features, settings, "a"),
        "b": save(tiny_models.b, tiny_models.features, settings, "b"),
    }
    registry.set_alias("telco", registry.CHAMPION, tags["a"], settings=settings)
    server = Server(home, free_port())
    try:
        server.wait_ready()
        yield server, tags, settings
    finally:
        server.stop()


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


def test_shadow_challenger_is_logged_but_never_returned(swap_server, tiny_models):
    server, tags, settings = swap_server
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


def test_hot_swap_under_load_fails_nothing(swap_server, tiny_models):
    server, tags, settings = swap_server
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


def test_sigterm_stop_keeps_every_request_with_shadow_scores(swap_server, tiny_models):
    """Last in this module: SIGTERM, then the log holds every answer, shadows beside them."""
    server, tags, settings = swap_server
    assert ANSWERS and SHADOWED
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
