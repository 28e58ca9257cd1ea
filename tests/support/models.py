"""Tiny LightGBM boosters on Telco features, trained once per session."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import polars as pl

from schemas import load_dataset
from tasks import registry
from tasks.features import FeatureSpec, build_features, to_matrix
from tasks.settings import Settings
from tests.support.telco import telco_frame

TINY_THRESHOLD = 0.4
TOY_FEATURES = FeatureSpec(columns=("a", "b"), categories={})


@dataclass(frozen=True)
class TinyModels:
    """Two different boosters on Telco features, and typed rows to score."""

    a: lgb.Booster
    b: lgb.Booster
    features: FeatureSpec
    rows: pl.DataFrame  # contract-typed input rows (no target)
    records: list[dict]  # the same rows as JSON records


def train_tiny(frame: pl.DataFrame, fspec: FeatureSpec, leaves: int, rounds: int) -> lgb.Booster:
    x = to_matrix(build_features(frame, fspec))
    y = (frame["Churn"] == "Yes").cast(pl.Int64).to_numpy()
    params = {
        "objective": "binary",
        "num_leaves": leaves,
        "learning_rate": 0.1,
        "num_threads": 1,
        "verbose": -1,
        "seed": 7,
        "deterministic": True,
    }
    data = lgb.Dataset(x, y, categorical_feature=fspec.categorical_indices, free_raw_data=False)
    return lgb.train(params, data, num_boost_round=rounds)


@functools.cache
def tiny_models() -> TinyModels:
    """Two small boosters (A: 7 leaves x 15 rounds, B: 15 x 25) and 400 held-out rows."""
    fspec = FeatureSpec.from_dataset(load_dataset("telco"))
    frame = telco_frame()
    train = frame.head(2000)
    a = train_tiny(train, fspec, leaves=7, rounds=15)
    b = train_tiny(train, fspec, leaves=15, rounds=25)
    rows = frame.slice(2000, 400).drop("Churn")
    return TinyModels(a, b, fspec, rows, rows.to_dicts())


def save_tiny(booster: lgb.Booster, fspec: FeatureSpec, settings: Settings, note: str) -> str:
    """Store a tiny booster as a ``telco`` model (threshold 0.4); return its tag."""
    meta = {"threshold": TINY_THRESHOLD, "task": "binary", "note": note}
    return registry.save_model(
        booster, name="telco", features=fspec, metadata=meta, settings=settings
    )


def scores_in_process(booster: lgb.Booster, fspec: FeatureSpec, rows: pl.DataFrame) -> np.ndarray:
    return booster.predict(to_matrix(build_features(rows, fspec)), num_threads=1)


def toy_booster(seed: int) -> lgb.Booster:
    """A small binary booster on two numeric features (``TOY_FEATURES``: label ``a`` + noise
    > 0); another seed gives another model."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(200, 2))
    y = (x[:, 0] + rng.normal(scale=0.5, size=200) > 0).astype(float)
    params = {"objective": "binary", "verbosity": -1, "num_threads": 1, "seed": seed}
    return lgb.train(params, lgb.Dataset(x, y), num_boost_round=3 + seed)


def save_toy_pair(name: str) -> tuple[str, str]:
    """Two toy models stored as ``name`` in the current home, the first promoted champion;
    their tags (champion, other)."""
    a, b = (
        registry.save_model(toy_booster(s), name=name, features=TOY_FEATURES, metadata={})
        for s in (1, 2)
    )
    registry.promote(name, a, reason="test")
    return a, b
