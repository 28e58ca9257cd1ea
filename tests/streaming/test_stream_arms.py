"""The consumer routes by rollout arm as the HTTP service does: under a canary each record is
answered by the model of its arm (sticky by the entity id), results come back in the records'
order naming model and arm, and the prediction log keeps the arm beside each record's key."""

from __future__ import annotations

import numpy as np
import orjson

from bentos.metrics import serving_metrics
from bentos.runtime import ModelWatcher, prediction_log
from schemas import load_dataset
from schemas.requests import request_models
from tasks import registry
from tasks.predict import score_frame
from tasks.predlog import load_predictions
from tasks.rollout import experiment
from tasks.rollout.config import RolloutConfig
from tasks.streaming.batch import Record, score_records
from tests.support.homes import ChampionHome
from tests.support.models import TinyModels


def test_each_record_is_scored_and_logged_by_its_arm(
    champion_home: ChampionHome, tiny_models: TinyModels
) -> None:
    settings, a, b = champion_home.settings, champion_home.champion, champion_home.other
    canary = RolloutConfig(mode="canary", ramp=(0.5, 1.0))
    experiment.start("telco", b, canary, reason="test", settings=settings)
    watcher = ModelWatcher("telco", settings, serving_metrics())
    router = watcher.check(force=True).router
    assert router is not None
    n = 60
    records = [Record(f"k{i}", orjson.dumps(r)) for i, r in enumerate(tiny_models.records[:n])]
    log = prediction_log(settings, serving_metrics(), flush_seconds=60)
    try:
        outcome = score_records(records, request_models(load_dataset("telco")), watcher, log)
    finally:
        log.close()
    results = orjson.loads(outcome.results)["results"]
    assert [r["key"] for r in results] == [r.key for r in records]  # the records' order
    arms = [router.arm(r["id"]) for r in results]
    assert [r["arm"] for r in results] == arms and set(arms) == {"champion", "challenger"}
    by_arm = {"champion": a, "challenger": b}
    assert [r["model_tag"] for r in results] == [by_arm[arm] for arm in arms]
    assert outcome.scored == {a: arms.count("champion"), b: arms.count("challenger")}
    rows = tiny_models.rows.head(n)
    for arm, tag in by_arm.items():  # each arm's scores are its own model's
        mask = np.array([x == arm for x in arms])
        want = score_frame(rows.filter(mask), registry.load_model(tag, settings))
        got = np.array([r["score"] for r, m in zip(results, mask, strict=True) if m])
        np.testing.assert_allclose(got, want, atol=1e-9)

    logged = load_predictions(settings=settings)
    by_key = dict(zip(logged["request_id"], logged["arm"], strict=True))
    assert by_key == {r["key"]: r["arm"] for r in results}
