"""Routing by arm in a worker, in process: the watcher serves the alias index's split once the
challenger is loaded; each record is answered by the model of its arm, in the request's order;
a failing challenger is stood in for by the champion; the log keeps the arm."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl
import pytest

from bentos.arms import predictions, score_routed, to_challenger
from bentos.runtime import ModelWatcher, _with_shadow
from tasks import registry
from tasks.predict import score_frame
from tasks.predlog import prediction_frame
from tasks.rollout import experiment
from tasks.rollout.config import RolloutConfig
from tasks.rollout.routing import Router
from tests.support.homes import ChampionHome
from tests.support.models import TinyModels

CANARY = RolloutConfig(mode="canary", ramp=(0.3, 0.6, 1.0))


class _Metrics:
    class _Counter:
        def labels(self, **_: str) -> _Metrics._Counter:
            return self

        def inc(self, n: float = 1) -> None: ...

    swaps = _Counter()


def test_the_watcher_serves_the_split_of_the_index(champion_home: ChampionHome) -> None:
    settings, a, b = champion_home.settings, champion_home.champion, champion_home.other
    watcher = ModelWatcher("telco", settings, _Metrics())  # type: ignore[arg-type]
    assert watcher.check().split is None and watcher.models.router is None

    started = experiment.start("telco", b, CANARY, reason="test", settings=settings)
    models = watcher.check()
    assert models.challenger.tag == b and models.split.share == 0.3
    assert models.router == Router(started.salt, 0.3)
    first = watcher.since["split"]

    experiment.finish("telco", "rollback", reason="test", settings=settings)
    models = watcher.check()
    assert (models.challenger, models.split, models.router) == (None, None, None)
    assert watcher.since["split"] > first and models.champion.tag == a

    experiment.start("telco", b, RolloutConfig(mode="shadow"), settings=settings)
    models = watcher.check()
    assert models.split.mode == "shadow" and models.router is None  # the champion answers all


def test_a_split_waits_for_its_challenger(champion_home: ChampionHome) -> None:
    settings, _, b = champion_home.settings, champion_home.champion, champion_home.other

    def refuse(tag, settings):
        raise registry.CorruptModelError(f"{tag}: not today")

    watcher = ModelWatcher("telco", settings, _Metrics(), loader=refuse)  # type: ignore[arg-type]
    watcher.models = replace(watcher.models, champion=registry.load_model(champion_home.champion,
                                                                          settings))  # fmt: skip
    experiment.start("telco", b, CANARY, settings=settings)
    models = watcher.check()
    assert models.challenger is None and models.split is None and models.router is None


@pytest.fixture
def loaded(champion_home: ChampionHome):
    settings = champion_home.settings
    a = registry.load_model(champion_home.champion, settings)
    b = registry.load_model(champion_home.other, settings)
    return a, b


def test_each_record_is_answered_by_its_arm_in_order(loaded, tiny_models: TinyModels) -> None:
    a, b = loaded
    router = Router("telco/exp", 0.5)
    frame = tiny_models.rows.head(40)
    ids = frame["customerID"].to_list()
    answers = score_routed(frame, a, b, router, "customerID", started=0.0)
    assert len(answers) == 2 and {x.batch.arm for x in answers} == {"champion", "challenger"}
    out = predictions(answers)
    assert [p["id"] for p in out] == ids
    for p, row in zip(out, frame.iter_slices(1), strict=True):
        model = b if router.arm(p["id"]) == "challenger" else a
        assert (p["arm"], p["model_tag"]) == (router.arm(p["id"]), model.tag)
        assert p["score"] == pytest.approx(float(score_frame(row, model)[0]))


def test_no_split_or_no_id_means_the_champion(loaded, tiny_models: TinyModels) -> None:
    a, b = loaded
    frame = tiny_models.rows.head(5)
    (only,) = score_routed(frame, a, b, None, "customerID", started=0.0)
    assert only.batch.arm == "champion" and only.rows is None
    assert to_challenger(frame.with_columns(customerID=pl.lit(None, pl.String)), "customerID",
                         Router("s", 1.0)) is None  # fmt: skip
    everyone = to_challenger(frame, "customerID", Router("s", 1.0))
    assert everyone is not None and everyone.all()


def test_a_failing_challenger_is_stood_in_for_and_logged_as_its_arm(
    loaded, tiny_models: TinyModels
) -> None:
    a, b = loaded
    broken = replace(b, booster=None)  # predicting raises
    frame = tiny_models.rows.head(3)
    (answer,) = score_routed(frame, a, broken, Router("s", 1.0), "customerID", started=0.0)
    assert answer.batch.arm == "challenger" and answer.batch.model_tag == a.tag
    logged = prediction_frame(_with_shadow([answer.batch], broken))
    assert logged["arm"].to_list() == ["challenger"] * 3
    assert logged["shadow_score"].null_count() == 3  # the challenger arm is not shadowed


def test_only_the_champion_arm_is_shadow_scored(loaded, tiny_models: TinyModels) -> None:
    a, b = loaded
    frame = tiny_models.rows.head(30)
    answers = score_routed(frame, a, b, Router("telco/x", 0.5), "customerID", started=0.0)
    logged = prediction_frame(_with_shadow([x.batch for x in answers], b))
    champ = logged.filter(pl.col("arm") == "champion")
    chall = logged.filter(pl.col("arm") == "challenger")
    assert champ["shadow_tag"].unique().to_list() == [b.tag]
    assert chall["shadow_score"].null_count() == chall.height > 0
    assert np.all(chall["model_tag"].to_numpy() == b.tag)
