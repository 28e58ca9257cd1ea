"""Helpers for the retrain and automation tests: a champion with a real reference snapshot,
prediction-log + feedback traffic with chosen labels, and Prefect API queries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import lightgbm as lgb
import numpy as np
import polars as pl

from schemas import load_dataset
from schemas.records import TS
from tasks import registry
from tasks.evaluate import label_vector
from tasks.features import FeatureSpec, build_features, to_matrix
from tasks.ingest import compose, parse, read
from tasks.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DS = load_dataset("telco")
N_REFERENCE = 2500
START = datetime(2026, 6, 1, tzinfo=UTC)


def telco_rows() -> pl.DataFrame:
    """The shipped Telco file, parsed and typed per the contract."""
    parsed = parse.parse_table(read.read_table(REPO / "data" / "telco_churn.csv", DS), DS)
    return parsed.frame.select(DS.column_names)


def make_champion(settings: Settings, rows: pl.DataFrame) -> registry.LoadedModel:
    """Ingest the first N_REFERENCE rows (a real snapshot + data version), fit a small
    LightGBM model on them and make it champion (fast: no tuning, no tracking)."""
    path = settings.root / "reference.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    rows.head(N_REFERENCE).write_parquet(path)
    ingested = compose.ingest_file(path, DS, settings=settings)
    frame = ingested.accepted
    fspec = FeatureSpec.from_dataset(DS)
    X, y = to_matrix(build_features(frame, fspec)), label_vector(frame, DS)
    params = {"objective": "binary", "num_threads": 1, "verbose": -1, "seed": 1}
    booster = lgb.train(params, lgb.Dataset(X, y, feature_name=list(fspec.columns)), 60)
    meta = {"data_version": ingested.data_version, "threshold": 0.5, "metrics": {},
            "params": params}  # fmt: skip
    tag = registry.save_model(
        booster, name=DS.name, features=fspec, metadata=meta, settings=settings
    )
    registry.set_alias(DS.name, registry.CHAMPION, tag, reason="test", settings=settings)
    return registry.load_model(tag, settings)


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
