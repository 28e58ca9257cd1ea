"""The rollout flow under a real Prefect server, on written prediction logs and labels: a worse
canary is rolled back, a better one walks the ramp and is promoted, a shadow challenger is
decided on paired rows; every look publishes its artifact, every move emits its event."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest

from flows.rollout import RolloutRunConfig, rollout
from tasks import registry
from tasks.predlog import FEEDBACK_TYPES, PREDICTION_TYPES
from tasks.rollout import experiment, report
from tasks.rollout.config import RolloutConfig
from tasks.rollout.routing import Router
from tasks.settings import get_settings
from tests.support.models import save_toy_pair

RUN = RolloutRunConfig(dataset="telco")


class FakeEmitter:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict]] = []

    def emit_rollout(self, kind: str, model_name: str, evidence: dict) -> str:
        self.events.append((kind, model_name, evidence))
        return f"fake-{len(self.events)}"


@pytest.fixture
def fake(monkeypatch) -> FakeEmitter:
    """The flow's default emitter replaced by a recorder for this test."""
    emitter = FakeEmitter()
    monkeypatch.setattr(report, "default_emitter", lambda: emitter)
    return emitter


@pytest.fixture
def models(home) -> tuple[str, str]:
    return save_toy_pair("telco")


def _traffic(exp: experiment.Experiment, n: int, *, challenger_noise: float, seed: int) -> None:
    """``n`` served rows routed as the service routes them (shadow: challenger scores beside),
    with labels; the challenger's scores carry ``challenger_noise`` logit noise (champion 1.5)."""
    settings = get_settings()
    rng = np.random.default_rng(seed)
    ids = [f"cust-{seed}-{i}" for i in range(n)]
    logit = rng.normal(-0.8, 1.5, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    score = lambda noise: 1 / (1 + np.exp(-(logit + rng.normal(0, noise, n))))  # noqa: E731
    champ, chall = score(1.5), score(challenger_noise)
    to_b = Router(exp.salt, exp.share).to_challenger(ids) if exp.mode == "canary" else np.zeros(n)
    to_b = to_b.astype(bool)
    shadow = exp.mode == "shadow"
    now = datetime.now(UTC)
    rids = [f"{seed}-{i}" for i in range(n)]
    head = pl.DataFrame(
        {
            "request_id": rids, "entity_id": ids, "ts": [now] * n,
            "model_tag": np.where(to_b, exp.challenger, exp.champion).tolist(),
            "score": np.where(to_b, chall, champ), "decision": [None] * n,
            "shadow_tag": [exp.challenger if shadow else None] * n,
            "shadow_score": chall if shadow else [None] * n, "latency_ms": [1.0] * n,
            "arm": np.where(to_b, "challenger", "champion").tolist(),
        },
        schema=PREDICTION_TYPES,
    )  # fmt: skip
    settings.predictions_dir.mkdir(parents=True, exist_ok=True)
    settings.feedback_dir.mkdir(parents=True, exist_ok=True)
    head.write_parquet(settings.predictions_dir / f"predictions-{seed}.parquet")
    pl.DataFrame(
        {"request_id": rids, "entity_id": [None] * n, "label": y, "ts": [now] * n},
        schema=FEEDBACK_TYPES,
    ).write_parquet(settings.feedback_dir / f"feedback-{seed}.parquet")  # fmt: skip


def _artifact(key: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )
    return sorted(found, key=lambda a: a.created)


CANARY = RolloutConfig(mode="canary", ramp=(0.25, 0.5, 1.0), min_labels=100, max_sample=4_000)


def test_a_worse_canary_is_rolled_back_with_its_evidence(models, fake, prefect_harness) -> None:
    a, b = models
    assert rollout(config=RUN)["action"] == "idle"
    started = experiment.start("telco", b, CANARY, reason="test")
    _traffic(started, 1_200, challenger_noise=3.5, seed=1)
    record = rollout(config=RUN)
    assert record["action"] == "rollback", record["explanation"]
    assert registry.read_index()["telco"]["aliases"] == {"champion": a}
    assert experiment.read_experiment("telco") is None
    ((kind, model, payload),) = fake.events
    assert (kind, model) == ("rolled_back", "telco") and payload is record
    ev = payload["evidence"]
    assert ev["design"] == "two_sample" and ev["lower"] > 0 and ev["p_value"] <= CANARY.alpha
    assert ev["mean_loss_challenger"] > ev["mean_loss_champion"]
    assert [arm["arm"] for arm in payload["arms"]] == ["champion", "challenger"]
    md = _artifact("rollout-telco")[-1]  # the key's latest version
    assert "**rollback**" in md.data and "two_sample" in md.data
    table = _artifact("rollout-telco-arms")[-1]
    assert '"challenger"' in table.data and '"lower"' in table.data
    assert rollout(config=RUN)["action"] == "idle"


def test_a_better_canary_walks_the_ramp_and_is_promoted(models, fake, prefect_harness) -> None:
    a, b = models
    started = experiment.start("telco", b, CANARY, reason="test")
    actions, shares = [], []
    for seed in range(10, 20):
        running = experiment.read_experiment("telco")
        if running is None:
            break
        _traffic(running, 600, challenger_noise=0.05, seed=seed)
        record = rollout(config=RUN)
        actions.append(record["action"])
        shares.append(record["share_after"])
    assert actions[-1] == "promote", actions
    assert "advance" in actions and shares[-1] == 1.0
    assert sorted(set(shares)) == [s for s in (0.25, 0.5, 1.0) if s in shares]
    assert registry.read_index()["telco"]["aliases"] == {"champion": b}
    kinds = [k for k, _, _ in fake.events]
    assert kinds[-1] == "promoted" and set(kinds) <= {"advanced", "promoted"}
    assert fake.events[-1][2]["experiment"]["id"] == started.id
    assert f"rollout {started.id}" in _artifact("rollout-telco")[-1].data.lower()


def test_shadow_decides_on_paired_rows_and_records_it(models, fake, prefect_harness) -> None:
    a, b = models
    config = RolloutConfig(mode="shadow", min_labels=100, max_sample=4_000)
    experiment.start("telco", b, config, reason="test")
    _traffic(experiment.read_experiment("telco"), 800, challenger_noise=0.05, seed=30)
    record = rollout(config=RUN)
    assert record["action"] == "promote", record["explanation"]
    assert record["evidence"]["design"] == "paired"
    assert record["evidence"]["n_champion"] == record["evidence"]["n_challenger"] == 800
    assert fake.events[-1][0] == "promoted"
    assert registry.read_index()["telco"]["aliases"] == {"champion": b}
    md = _artifact("rollout-telco")[-1]
    assert "paired always-valid test" in md.data and "**promote**" in md.data


def test_the_deployment_looks_every_minute_one_at_a_time() -> None:
    import yaml

    from tests.support.telco import REPO

    (dep,) = [
        d for d in yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]
        if d["name"] == "rollout"
    ]  # fmt: skip
    assert dep["entrypoint"] == "flows/rollout.py:rollout"
    assert dep["schedules"] == [{"interval": 60, "active": True}]
    assert dep["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}
    assert RolloutRunConfig.model_validate(dep["parameters"]["config"]) == RUN
