"""The replay's champion: a LightGBM model trained on part of a dataset, registered as the
champion with its reference (held-out rows, their scores and labels), the rest of the rows
kept as the pool the scenario windows are drawn from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from schemas.base import DatasetSpec
from tasks.settings import Settings
from tasks.trees import SmallTrees

if TYPE_CHECKING:
    from tasks.registry import LoadedModel

TRAIN_SHARE = 0.5  # of the rows; the rest is split between the reference and the pool
REFERENCE_SHARE = 0.4  # of the held-out rows
SCORE = "__replay_score__"  # the pool's score column (not an input; dropped before logging)


@dataclass(frozen=True)
class ChampionParams:
    trees: SmallTrees = SmallTrees(num_trees=150, learning_rate=0.05, min_data_in_leaf=40)
    threshold: float = 0.5
    seed: int = 0


@dataclass(frozen=True)
class Prepared:
    """The registered champion, the pool the windows come from (with the champion's score as
    :data:`SCORE`, for selections on it), and the least used feature."""

    champion: LoadedModel
    pool: pl.DataFrame
    reference_auc: float
    least_used_feature: str


def score(model: LoadedModel, frame: pl.DataFrame) -> np.ndarray:
    """The champion's scores on contract rows (the one feature function, as serving)."""
    from tasks.features import build_features, to_matrix

    return model.booster.predict(to_matrix(build_features(frame, model.features)), num_threads=1)


def _split(frame: pl.DataFrame, seed: int) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    order = np.random.default_rng(seed).permutation(frame.height)
    n_train = int(frame.height * TRAIN_SHARE)
    n_ref = int((frame.height - n_train) * REFERENCE_SHARE)
    cuts = (order[:n_train], order[n_train : n_train + n_ref], order[n_train + n_ref :])
    return frame[cuts[0]], frame[cuts[1]], frame[cuts[2]]


def _least_used(dataset: DatasetSpec, gains: dict[str, float]) -> str:
    """The feature of least gain (a shift there should barely matter)."""
    return min((c for c in dataset.feature_columns if c in gains), key=lambda c: gains[c])


def prepare_champion(
    frame: pl.DataFrame,
    dataset: DatasetSpec,
    settings: Settings | None = None,
    params: ChampionParams | None = None,
) -> Prepared:
    """Train, register as champion, and save the reference from held-out rows."""
    import lightgbm as lgb

    from tasks import registry
    from tasks.features import FeatureSpec, build_features, to_matrix
    from tasks.metrics import roc_auc
    from tasks.profiling import save_reference_profile

    params = params or ChampionParams()
    train, reference, pool = _split(frame, params.seed)
    fspec = FeatureSpec.from_dataset(dataset)
    y = (train[dataset.target].cast(pl.String) == str(dataset.positive_class)).to_numpy()
    data = lgb.Dataset(to_matrix(build_features(train, fspec)), y.astype(float),
                       feature_name=list(fspec.columns))  # fmt: skip
    booster = params.trees.train("binary", data, params.seed)
    gains = dict(zip(fspec.columns, map(float, booster.feature_importance("gain")), strict=True))
    ref_scores = booster.predict(to_matrix(build_features(reference, fspec)), num_threads=1)
    ref_y = (reference[dataset.target].cast(pl.String) == str(dataset.positive_class)).to_numpy()
    auc = roc_auc(ref_y.astype(float), ref_scores)
    meta = {"metrics": {"roc_auc": auc}, "threshold": params.threshold,
            "feature_importance": gains}  # fmt: skip
    tag = registry.save_model(booster, name=dataset.name, features=fspec, metadata=meta,
                              settings=settings)  # fmt: skip
    registry.set_alias(dataset.name, "champion", tag, reason="replay", settings=settings)
    save_reference_profile(reference, ref_scores, tag, dataset, settings)
    model = registry.load_model(tag, settings)
    pool = pool.with_columns(pl.Series(SCORE, score(model, pool)))
    return Prepared(model, pool, auc, _least_used(dataset, gains))
