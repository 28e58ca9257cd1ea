"""The champion's label-free estimators: CBPE (binary) or DLE (regression), the domain
classifier's reference, and the "no loss" baseline, fitted on the champion's reference
sample's held-out labelled rows.

Fitted once per champion and kept beside its reference as JSON (calibration knots, LightGBM
model text, the domain classifier's calibrated null; never a pickle, which would be code a
process loads from a directory other hosts may write). The file carries the SHA-256 of the
reference sample it was fitted on and of its own body: a changed sample, a newer format or a
damaged file means a refit (and a rewrite), never a load. Within a process the fit is also
kept in memory (the replay and the benchmarks reuse it).

A champion trained before labels were kept in the sample gets the domain classifier only; the
report says why the estimate is missing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from schemas.base import DatasetSpec
from tasks.estimation import cbpe as cbpe_
from tasks.estimation import dle as dle_
from tasks.estimation import domain as domain_
from tasks.estimation.cbpe import CBPEModel, ValueKnobs, estimate_performance, fit_cbpe
from tasks.estimation.dle import DLEModel, estimate_loss, fit_dle
from tasks.estimation.domain import DomainReference, fit_domain_classifier
from tasks.estimation.stats import Metrics, metrics_from_json, metrics_to_json
from tasks.io import atomic_write
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


CACHE_FORMAT = 3  # bump when what an estimator keeps, or how it is fitted, changes


def cache_path(reference: Reference) -> Path:
    """``<tag>.estimators.json`` beside the reference's ``<tag>.sample.parquet``."""
    name = reference.sample_path.name.removesuffix(".sample.parquet")
    return reference.sample_path.with_name(f"{name}.estimators.json")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True).encode()


def _to_json(est: Estimators) -> dict[str, Any]:
    return {
        "champion_tag": est.champion_tag, "task": est.task, "threshold": est.threshold,
        "cbpe": None if est.cbpe is None else cbpe_.cbpe_to_json(est.cbpe),
        "dle": None if est.dle is None else dle_.dle_to_json(est.dle),
        "domain": None if est.domain is None else domain_.domain_to_json(est.domain),
        "baseline": None if est.baseline is None else metrics_to_json(est.baseline),
        "reference_positives": est.reference_positives, "reference_labels": est.reference_labels,
        "notes": list(est.notes),
    }  # fmt: skip


def _from_json(doc: dict[str, Any], features: pl.DataFrame) -> Estimators:
    domain = doc["domain"]
    return Estimators(
        doc["champion_tag"], doc["task"], float(doc["threshold"]),
        None if doc["cbpe"] is None else cbpe_.cbpe_from_json(doc["cbpe"]),
        None if doc["dle"] is None else dle_.dle_from_json(doc["dle"]),
        None if domain is None else domain_.domain_from_json(domain, features),
        None if doc["baseline"] is None else metrics_from_json(doc["baseline"]),
        int(doc["reference_positives"]), int(doc["reference_labels"]), tuple(doc["notes"]),
    )  # fmt: skip


def save_estimators(est: Estimators, reference: Reference) -> Path:
    """Write the fitted estimators beside the reference (atomically)."""
    body = _to_json(est)
    doc = {"format": CACHE_FORMAT, "sample_sha256": _sha256(reference.sample_path.read_bytes()),
           "body_sha256": _sha256(_canonical(body)), "body": body}  # fmt: skip
    path = cache_path(reference)
    atomic_write(path, _canonical(doc))
    return path


def read_estimators(reference: Reference, dataset: DatasetSpec) -> Estimators | None:
    """The estimators saved beside ``reference``, or None when there are none, or they were
    fitted on another sample, in another format, or the file is damaged."""
    path = cache_path(reference)
    try:
        doc = json.loads(path.read_bytes())
        body = doc["body"]
        current = (doc["format"] == CACHE_FORMAT
                   and doc["sample_sha256"] == _sha256(reference.sample_path.read_bytes())
                   and doc["body_sha256"] == _sha256(_canonical(body))
                   and body["champion_tag"] == reference.model_tag)  # fmt: skip
        return _from_json(body, encode(reference.sample, dataset)) if current else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


_FITTED: dict[str, Estimators] = {}  # per process: the replay and benchmarks reuse one fit


def load_estimators(
    reference: Reference,
    dataset: DatasetSpec,
    champion: Champion,
    settings: Settings | None = None,
) -> Estimators:
    """The champion's estimators: this process's, else those saved beside the reference, else
    fitted now (and saved)."""
    fitted = _FITTED.get(champion.tag)
    if fitted is None:
        fitted = read_estimators(reference, dataset)
        if fitted is None:
            fitted = fit_estimators(reference, dataset, champion)
            save_estimators(fitted, reference)
        _FITTED[champion.tag] = fitted
    return fitted
