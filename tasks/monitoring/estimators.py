"""The champion's label-free estimators: CBPE (binary) or DLE (regression), the domain
classifier's reference, and the "no loss" baseline, fitted on the champion's reference
sample's held-out labelled rows (once per process; never pickled to disk).

Why lazily in the monitor and not at training time: the reference sample already holds the
held-out rows, their scores and (since issue #14) their labels, so a monitor run fits them in
a few seconds. A champion trained before labels were kept in the sample gets the
domain classifier only; the report says why the estimate is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from schemas.base import DatasetSpec
from tasks.estimation.cbpe import CBPEModel, ValueKnobs, estimate_performance, fit_cbpe
from tasks.estimation.dle import DLEModel, estimate_loss, fit_dle
from tasks.estimation.domain import DomainReference, fit_domain_classifier
from tasks.estimation.stats import Metrics
from tasks.settings import Settings

if TYPE_CHECKING:
    from tasks.monitoring.window import Champion
    from tasks.profiling import Reference

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


_FITTED: dict[str, Estimators] = {}  # per process: the replay and benchmarks reuse one fit


def load_estimators(
    reference: Reference,
    dataset: DatasetSpec,
    champion: Champion,
    settings: Settings | None = None,
) -> Estimators:
    """The champion's estimators, fitted from its reference sample once per process.

    Not cached on disk: a pickle in the state directory would be code that a process loads
    from a place other hosts may write (a shared home), which the threat model rules out; a
    fit costs a few seconds of a monitor run."""
    fitted = _FITTED.get(champion.tag)
    if fitted is None:
        fitted = _FITTED[champion.tag] = fit_estimators(reference, dataset, champion)
    return fitted
