"""The replay's champion: a LightGBM model trained on part of a dataset, registered as the
champion with its reference (held-out rows, their scores and labels), the rest of the rows
kept as the pool the scenario windows are drawn from; and the feature its harmless shift
moves, chosen on the reference."""

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
HARMLESS_MIN_SHIFT = 0.25  # standard deviations the harmless tilt must move its feature's mean


@dataclass(frozen=True)
class ChampionParams:
    trees: SmallTrees = SmallTrees(num_trees=150, learning_rate=0.05, min_data_in_leaf=40)
    threshold: float = 0.5
    seed: int = 0


@dataclass(frozen=True)
class Prepared:
    """The registered champion, the pool the windows come from (with the champion's score as
    :data:`SCORE`, for selections on it), and the feature of the harmless shift."""

    champion: LoadedModel
    pool: pl.DataFrame
    reference_auc: float
    harmless_feature: str


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


def harmless_feature(
    dataset: DatasetSpec, gains: dict[str, float], reference: pl.DataFrame, labels: np.ndarray
) -> str:
    """The feature the harmless scenario tilts (within bins of the score, :data:`SCORE` in
    ``reference``): of the less used half (gain at most the median) and among those the tilt
    visibly moves (the weighted mean by at least :data:`HARMLESS_MIN_SHIFT` standard
    deviations), the one whose tilt moves the champion's ROC AUC on the reference rows least
    (measured where the monitor has labels, never on the pool the windows come from). A
    feature the model ignores can still matter through the rows it selects (Telco's phone
    service: a tilt moved the AUC by 0.0075); the least used one, if none qualifies."""
    from dataclasses import replace

    from tasks.metrics import roc_auc, weighted_roc_auc
    from tasks.simulate import SCENARIOS, standardised, tilt_weights

    used = [c for c in dataset.feature_columns if c in gains]
    median = float(np.median([gains[c] for c in used]))
    scores = reference[SCORE].to_numpy()
    base, effects = roc_auc(labels, scores), {}
    for col in (c for c in used if gains[c] <= median):
        spec = replace(SCENARIOS["harmless_covariate"], column=col, within=SCORE)
        w = tilt_weights(reference, dataset, spec)
        if np.mean(w * standardised(reference, dataset, col)) >= HARMLESS_MIN_SHIFT:
            effects[col] = abs(weighted_roc_auc(labels, scores, w) - base)
    if not effects:
        return min(used, key=lambda c: gains[c])
    return min(effects, key=lambda c: effects[c])


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
    scored = reference.with_columns(pl.Series(SCORE, ref_scores))
    return Prepared(model, pool, auc, harmless_feature(dataset, gains, scored, ref_y.astype(float)))
