"""The champion's label-free estimators: CBPE (binary) or DLE (regression), the domain
classifier's reference, and the "no loss" baseline, fitted once per champion on its reference
sample's held-out labelled rows and cached beside the reference profile.

Why lazily in the monitor and not at training time: the reference sample already holds the
held-out rows, their scores and (since issue #14) their labels, so the first monitor run of a
champion fits in a few seconds and every later run reads the cache (``<tag>.estimators-v1.pkl``
next to ``<tag>.bin``). A champion trained before labels were kept in the sample gets the
domain classifier only; the report says why the estimate is missing.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from schemas.base import DatasetSpec
from tasks.estimation.cbpe import CBPEModel, ValueKnobs, estimate_performance, fit_cbpe
from tasks.estimation.dle import DLEModel, estimate_loss, fit_dle
from tasks.estimation.domain import DomainReference, fit_domain_classifier
from tasks.estimation.stats import Metrics
from tasks.io import atomic_write
from tasks.settings import Settings

if TYPE_CHECKING:
    from tasks.monitoring.window import Champion
    from tasks.profiling import Reference

CACHE_FORMAT = 1  # bump when the pickled classes change shape
MIN_REFERENCE_LABELS = 200  # fewer labelled reference rows: no estimator


@dataclass(frozen=True)
class Estimators:
    """What the monitor estimates with, for one champion."""

    champion_tag: str
    task: str
    threshold: float
    cbpe: CBPEModel | None
    dle: DLEModel | None
    domain: DomainReference | None
    baseline: Metrics | None  # the estimate on the reference rows: the "no loss" level
    reference_positives: int  # labelled reference rows that are positive (binary)
    reference_labels: int
    notes: tuple[str, ...]  # what could not be fitted, and why

    @property
    def can_estimate(self) -> bool:
        return self.cbpe is not None or self.dle is not None


def encode(frame: pl.DataFrame, dataset: DatasetSpec) -> pl.DataFrame:
    """Feature columns as numbers: numeric ones as floats, categorical ones as category codes
    (the contract's order; unknown values null)."""
    exprs = [pl.col(c).cast(pl.Float64) for c in dataset.numeric_features]
    for c in dataset.categorical_features:
        cats = [str(v) for v in dataset.columns[c].categories or ()]
        codes = (
            pl.col(c)
            .cast(pl.String)
            .replace_strict(cats, list(range(len(cats))), default=None, return_dtype=pl.Float64)
        )
        exprs.append(codes.alias(c))
    return frame.select(exprs)


def estimate(estimators: Estimators, frame: pl.DataFrame, dataset: DatasetSpec):
    """The estimate on ``frame`` (feature columns and ``score``): a ``CBPEResult`` or a
    ``DLEResult``; None without an estimator."""
    if estimators.cbpe is not None:
        return estimate_performance(estimators.cbpe, frame["score"].to_numpy())
    if estimators.dle is not None:
        return estimate_loss(estimators.dle, encode(frame, dataset), frame["score"].to_numpy())
    return None


def fit_estimators(reference: Reference, dataset: DatasetSpec, champion: Champion) -> Estimators:
    """Fit every estimator the reference sample allows (labels, enough rows, the task)."""
    from tasks.profiling import LABEL_COLUMN, SCORE_COLUMN

    sample, notes = reference.sample, []
    features = encode(sample, dataset)
    domain = fit_domain_classifier(features, categorical=tuple(dataset.categorical_features))
    labelled = sample.filter(pl.col(LABEL_COLUMN).is_not_null()) if (
        LABEL_COLUMN in sample.columns) else sample.clear()  # fmt: skip
    y = labelled[LABEL_COLUMN].to_numpy() if labelled.height else np.empty(0)
    cbpe = dle = baseline = None
    if labelled.height < MIN_REFERENCE_LABELS:
        notes.append(
            f"{labelled.height} labelled reference rows < {MIN_REFERENCE_LABELS}: no label-free"
            " estimate (a champion trained before issue #14 keeps none)"
        )
    elif dataset.task == "binary":
        scores = labelled[SCORE_COLUMN].to_numpy()
        knobs = ValueKnobs.from_extras(getattr(dataset, "extras", {}) or {})
        cbpe = fit_cbpe(scores, y, threshold=champion.threshold, value=knobs)
        baseline = estimate_performance(cbpe, scores).metrics
    else:
        scores = labelled[SCORE_COLUMN].to_numpy()
        dle = fit_dle(encode(labelled, dataset), scores, y,
                      categorical=tuple(dataset.categorical_features))  # fmt: skip
        baseline = estimate_loss(dle, encode(labelled, dataset), scores).metrics
    positives = int((y == 1).sum()) if dataset.task == "binary" else 0
    return Estimators(champion.tag, dataset.task, champion.threshold, cbpe, dle, domain,
                      baseline, positives, int(y.size), tuple(notes))  # fmt: skip


def load_estimators(
    reference: Reference,
    dataset: DatasetSpec,
    champion: Champion,
    settings: Settings | None = None,
) -> Estimators:
    """The champion's estimators from the cache beside its reference, fitted on a miss."""
    from tasks.profiling import reference_paths

    profile, _, _ = reference_paths(champion.tag, settings)
    path = profile.with_name(f"{profile.stem}.estimators-v{CACHE_FORMAT}.pkl")
    try:
        cached = pickle.loads(path.read_bytes())
        if isinstance(cached, Estimators) and cached.champion_tag == champion.tag:
            return cached
    except (FileNotFoundError, pickle.UnpicklingError, EOFError, AttributeError):
        pass
    fitted = fit_estimators(reference, dataset, champion)
    atomic_write(path, pickle.dumps(fitted, protocol=pickle.HIGHEST_PROTOCOL))
    return fitted
