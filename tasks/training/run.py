"""What the train flow needs around the model: the data file, a fresh study name, the
model's lineage, and the flow's JSON-ready answer."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightgbm as lgb

from schemas.base import DatasetSpec
from tasks.tracking import git_sha
from tasks.training.storage import redact

if TYPE_CHECKING:
    from tasks.registry import PriorModel, RegisteredModel

DATA_SUFFIXES = (".parquet", ".csv")
_REPO = Path(__file__).resolve().parents[2]


def resolve_data_path(data: str | None, dataset: DatasetSpec) -> Path:
    """The file to train on: ``data`` if given, else the dataset's ``extras["source"]``, else
    the one file named ``data/<name>.*`` or ``data/<name>_*.*`` (CSV/Parquet) in the repo."""
    if data:
        path = Path(data)
    elif dataset.extras.get("source"):
        path = Path(dataset.extras["source"])
        if not path.is_absolute() and not path.exists():
            path = _REPO / path
    else:
        found = sorted(
            p
            for pattern in (f"{dataset.name}.*", f"{dataset.name}_*.*")
            for p in (_REPO / "data").glob(pattern)
            if p.suffix in DATA_SUFFIXES
        )
        if len(found) != 1:
            what = "no" if not found else f"{len(found)} candidate"
            raise FileNotFoundError(
                f"{what} data file(s) for dataset {dataset.name!r} in {_REPO / 'data'}: "
                "pass one with --data PATH"
            )
        path = found[0]
    if not path.exists():
        raise FileNotFoundError(f"training data file {path} does not exist")
    return path


def new_study_name(dataset: str, data_version: str) -> str:
    """A fresh study per run (a reused name would continue the old study's trials)."""
    return f"{dataset}-{data_version}-{datetime.now(UTC):%Y%m%dT%H%M%S%f}"


def lineage(
    *,
    config: dict[str, Any],
    data_version: str,
    source: Path,
    prior: PriorModel,
    storage: str | None,
) -> dict[str, Any]:
    """Where a model comes from: data, code, config and its parent models."""
    warm_from = prior.champion if (config.get("warm_start") and prior.champion) else None
    return {
        "config": config,
        "data_version": data_version,
        "data_source": str(source),
        "git_sha": git_sha(),
        "warm_start_from": warm_from,
        "init_model": prior.init_tag,
        "optuna_storage": redact(storage),
        "lightgbm_version": lgb.__version__,
    }


def train_result(
    *,
    registered: RegisteredModel,
    metadata: dict[str, Any],
    slices: dict[str, Any],
    profile: Path | None,
) -> dict[str, Any]:
    """The flow's JSON-ready answer."""
    keys = (
        "dataset", "task", "data_version", "schema_hash", "metrics", "baseline_metrics",
        "threshold", "business", "params", "best_iteration", "tuning", "rows", "git_sha",
        "wandb_run_dir", "wandb_run_path", "warm_start_from", "init_model", "train_wall_s",
        "peak_rss_mb",
    )  # fmt: skip
    out = {"model_tag": registered.tag, "alias": registered.alias}
    out.update({k: metadata.get(k) for k in keys})
    out["expected_value_per_month"] = (metadata.get("business") or {}).get(
        "expected_value_per_month"
    )
    out["slices"] = slices
    out["model_path"] = str(registered.path)
    out["reference_profile"] = str(profile) if profile else None
    return out
