"""The demo's traffic: the data split into phases (reference, calm, drifted windows, after the
swap), replayed against the running service, with the delayed labels sent through /feedback."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import numpy as np
import polars as pl

from driftloop.supervise import wait_for

if TYPE_CHECKING:
    from driftloop.demo import DemoConfig
    from schemas.base import DatasetSpec


@dataclass(frozen=True)
class DemoData:
    reference: Path  # the first champion trains on this
    calm: pl.DataFrame  # in-distribution traffic
    drifted: list[pl.DataFrame]  # drifted traffic, one frame per monitor window
    after: pl.DataFrame  # drifted traffic replayed after the swap (never trained on)


def prepare_data(config: DemoConfig, dataset: DatasetSpec, reference_path: Path) -> DemoData:
    """Split the valid rows into reference (written to ``reference_path``) / calm / drifted
    windows / after-swap traffic."""
    from tasks.ingest.compose import read_valid_rows
    from tasks.ingest.snapshot import write_table
    from tasks.simulate import DriftSpec, inject_drift

    rows = read_valid_rows(config.data, dataset).accepted
    rows = rows.sample(fraction=1.0, shuffle=True, seed=config.seed)
    n_ref = int(rows.height * config.reference_share)
    reference, live = rows[:n_ref], rows[n_ref:]
    reference_path = write_table(reference, reference_path)
    n = live.height
    calm, rest = live[: n // 4], live[n // 4 :]
    tilt = most_telling_category(reference, dataset)
    covariate = inject_drift(rest, dataset, DriftSpec("covariate", 1.0, tilt, config.seed))
    if config.scenario == "concept":
        spec = DriftSpec("concept", config.drift_severity, config.drift_column, config.seed)
    else:
        spec = DriftSpec("label_noise", 1.0, seed=config.seed)
    drifted = inject_drift(covariate, dataset, spec)
    k = drifted.height // 3
    return DemoData(reference_path, calm, [drifted[:k], drifted[k : 2 * k]], drifted[2 * k :])


def most_telling_category(frame: pl.DataFrame, dataset: DatasetSpec) -> str | None:
    """The categorical feature whose categories differ most in positive rate: tilting the
    traffic towards one of its categories is drift that matters to the model."""
    if dataset.task != "binary" or not dataset.categorical_features:
        return None
    y = (pl.col(dataset.target) == dataset.positive_class).cast(pl.Float64)
    spread = {
        c: frame.group_by(c).agg(y.mean().alias("r"))["r"].drop_nulls()
        for c in dataset.categorical_features
    }
    return max(spread, key=lambda c: spread[c].max() - spread[c].min())


@dataclass
class Replay:
    """What a replayed phase sent and got back."""

    started: datetime
    ended: datetime
    request_ids: list[str]
    scores: np.ndarray
    labels: np.ndarray
    tags: list[str]
    failures: int  # 5xx or no answer: the service's fault
    rejected: int  # 4xx: the request broke the contract (drifted data can)


def replay(client: httpx.Client, frame: pl.DataFrame, dataset: DatasetSpec, batch: int) -> Replay:
    """POST the rows to /predict in batches; their labels are sent later (:func:`send_labels`)."""
    inputs = frame.drop(dataset.target)
    truth = (frame[dataset.target] == dataset.positive_class).to_numpy().astype(float)
    started = datetime.now(UTC)
    request_ids: list[str] = []
    scores: list[float] = []
    labels: list[float] = []
    tags: list[str] = []
    failures = rejected = 0
    for lo in range(0, inputs.height, batch):
        records = inputs[lo : lo + batch].to_dicts()
        try:
            resp = client.post("/predict", json={"records": records})
        except httpx.HTTPError:
            failures += len(records)
            continue
        if 400 <= resp.status_code < 500:
            rejected += len(records)
            continue
        if resp.status_code != 200:
            failures += len(records)
            continue
        for p, y in zip(resp.json()["predictions"], truth[lo : lo + batch], strict=True):
            request_ids.append(p["request_id"])
            scores.append(p["score"])
            tags.append(p["model_tag"])
            labels.append(float(y))
    return Replay(
        started, datetime.now(UTC), request_ids, np.array(scores), np.array(labels), tags,
        failures, rejected,
    )  # fmt: skip


def send_labels(client: httpx.Client, phase: Replay) -> None:
    """The delayed ground truth of a replayed phase, through /feedback."""
    items = [
        {"request_id": r, "label": float(y)}
        for r, y in zip(phase.request_ids, phase.labels, strict=True)
    ]
    for lo in range(0, len(items), 500):
        client.post("/feedback", json={"feedback": items[lo : lo + 500]}).raise_for_status()


def wait_logged(phase: Replay, timeout_s: float = 20.0) -> None:
    """The service logs in buffered batches: wait until this phase's rows are on disk."""
    from tasks.predlog import load_predictions

    want = len(phase.request_ids)
    wait_for(
        lambda: load_predictions(since=phase.started).height >= want,
        timeout_s, what=f"{want} logged predictions",
    )  # fmt: skip


def auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    from tasks.metrics import roc_auc

    if len(set(labels.tolist())) < 2:
        return None
    return roc_auc(labels, scores)
