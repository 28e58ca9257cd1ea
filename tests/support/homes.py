"""Homes with a champion: the two ways tests need one.

- :func:`tiny_champion_home`: tiny boosters A (champion) and B (stored, or challenger), fast;
  for serving, scoring and watcher tests.
- :func:`snapshot_champion`: a real ingest snapshot of the first ``N_REFERENCE`` Telco rows and
  a model fitted on it; for retrain and automation tests, which read the reference back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import polars as pl

from schemas import load_dataset
from tasks import registry
from tasks.settings import Settings
from tests.support.models import TinyModels, save_tiny

N_REFERENCE = 2500


def settings_at(home: Path) -> Settings:
    """Settings for ``home`` with its state layout created."""
    return Settings(home=home).ensure_dirs()


@dataclass(frozen=True)
class ChampionHome:
    """A home whose ``telco`` champion is tiny model A; tiny model B is stored beside it."""

    settings: Settings
    champion: str  # tag of A
    other: str  # tag of B (the challenger when asked for, else only stored)

    @property
    def root(self) -> Path:
        return self.settings.root


def tiny_champion_home(
    settings: Settings, models: TinyModels, *, challenger: bool = False
) -> ChampionHome:
    """Store A and B in ``settings``' home; A becomes champion, B challenger if asked."""
    settings.ensure_dirs()
    a = save_tiny(models.a, models.features, settings, "a")
    b = save_tiny(models.b, models.features, settings, "b")
    registry.set_alias("telco", registry.CHAMPION, a, settings=settings)
    if challenger:
        registry.set_alias("telco", registry.CHALLENGER, b, settings=settings)
    return ChampionHome(settings, a, b)


def snapshot_champion(settings: Settings, rows: pl.DataFrame) -> registry.LoadedModel:
    """Ingest the first N_REFERENCE rows (a real snapshot + data version), fit a small
    LightGBM model on them and make it champion (fast: no tuning, no tracking)."""
    from tasks.evaluate import label_vector
    from tasks.features import FeatureSpec, build_features, to_matrix
    from tasks.ingest import compose

    ds = load_dataset("telco")
    path = settings.root / "reference.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    rows.head(N_REFERENCE).write_parquet(path)
    ingested = compose.ingest_file(path, ds, settings=settings)
    frame = ingested.accepted
    fspec = FeatureSpec.from_dataset(ds)
    X, y = to_matrix(build_features(frame, fspec)), label_vector(frame, ds)
    params = {"objective": "binary", "num_threads": 1, "verbose": -1, "seed": 1}
    booster = lgb.train(params, lgb.Dataset(X, y, feature_name=list(fspec.columns)), 60)
    meta = {"data_version": ingested.data_version, "threshold": 0.5, "metrics": {},
            "params": params}  # fmt: skip
    tag = registry.save_model(
        booster, name=ds.name, features=fspec, metadata=meta, settings=settings
    )
    registry.set_alias(ds.name, registry.CHAMPION, tag, reason="test", settings=settings)
    return registry.load_model(tag, settings)
