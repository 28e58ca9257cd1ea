"""Helpers for the retrain and automation tests: a home with a champion that has a real
reference snapshot, prediction-log + feedback traffic with chosen labels."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from schemas import load_dataset
from schemas.records import TS
from tasks import registry
from tasks.features import build_features, to_matrix
from tasks.settings import Settings
from tests.support.homes import settings_at, snapshot_champion
from tests.support.telco import telco_rows

DS = load_dataset("telco")
START = datetime(2026, 6, 1, tzinfo=UTC)


@dataclass(frozen=True)
class ChampionWorld:
    """A home (DRIFTLOOP_HOME points at it) whose champion trained on the first
    ``N_REFERENCE`` Telco rows, and every Telco row (the later ones are unseen traffic)."""

    settings: Settings
    champion: registry.LoadedModel
    rows: pl.DataFrame


@contextlib.contextmanager
def champion_world(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[ChampionWorld]:
    """The shared part of the module-scoped retrain and automation fixtures."""
    home = tmp_path_factory.mktemp(name)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DRIFTLOOP_HOME", str(home))
        settings = settings_at(home)
        rows = telco_rows()
        yield ChampionWorld(settings, snapshot_champion(settings, rows), rows)


def flipped_labels(rows: pl.DataFrame, seed: int = 0) -> np.ndarray:
    """Concept drift: long-tenure customers now churn, short-tenure ones stay (5% noise)."""
    rng = np.random.default_rng(seed)
    y = (rows["tenure"].to_numpy() > 30).astype(float)
    flip = rng.random(len(y)) < 0.05
    return np.where(flip, 1 - y, y)


def noise_labels(rows: pl.DataFrame, seed: int = 0) -> np.ndarray:
    """Labels that carry no signal at all."""
    return (np.random.default_rng(seed).random(rows.height) < 0.3).astype(float)


def write_traffic(
    settings: Settings, model: registry.LoadedModel, rows: pl.DataFrame, labels: np.ndarray
) -> None:
    """A prediction log of ``rows`` (one per minute from START) and their feedback labels."""
    assert settings.root.name != "" and "pytest" in str(settings.root)  # only our temp dirs
    for folder in (settings.predictions_dir, settings.feedback_dir):
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.parquet"):
            old.unlink()
    n = rows.height
    inputs = rows.drop(DS.target)
    scores = model.predict(to_matrix(build_features(inputs, model.features)))
    ts = pl.Series([START + timedelta(minutes=i) for i in range(n)], dtype=TS)
    request_ids = [f"req-{i}" for i in range(n)]
    head = pl.DataFrame(
        {
            "request_id": request_ids,
            "entity_id": inputs[DS.id_column],
            "ts": ts,
            "model_tag": [model.tag] * n,
            "score": scores,
            "decision": scores >= 0.5,
            "shadow_tag": pl.Series([None] * n, dtype=pl.String),
            "shadow_score": pl.Series([None] * n, dtype=pl.Float64),
            "latency_ms": [1.0] * n,
        }
    )
    pl.concat([head, inputs], how="horizontal").write_parquet(
        settings.predictions_dir / "batch-0.parquet"
    )
    pl.DataFrame(
        {
            "request_id": request_ids,
            "entity_id": pl.Series([None] * n, dtype=pl.String),
            "label": pl.Series(labels, dtype=pl.Float64),
            "ts": pl.Series([t + timedelta(hours=1) for t in ts], dtype=TS),
        }
    ).write_parquet(settings.feedback_dir / "batch-0.parquet")
